"""GET /openapi.json: OpenAPI 3.1 of every route, described here, beside routes.py.

`OPERATIONS` holds one entry per (method, path) of the URL map; tests/http/test_openapi.py
fails when a route has no entry here or an entry has no route, and says what to add. An entry
names its summary, its request body (form and JSON, or JSON only), its security and every
response the endpoint gives; every error response has the `Error` schema of API.md.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authserver import __version__
from authserver.http.context import services

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _strings(*names: str) -> dict[str, Schema]:
    return {name: {"type": "string"} for name in names}


def _nullable_string(limit: int, description: str) -> Schema:
    return {
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": limit,
        "description": description,
    }


# A user's profile (API.md "Accounts: who signs in", authserver/accounts/profiles.py): in a
# change, a null clears a field and an absent one stays as it is.
PROFILE_PROPERTIES: dict[str, Schema] = {
    "email": _nullable_string(
        254,
        "unique among live users, compared case-insensitively (409 when taken); a new address"
        " is unverified unless email_verified is sent with it",
    ),
    "email_verified": {"type": "boolean"},
    "name": _nullable_string(256, "the full name, for display"),
    "given_name": _nullable_string(256, "the given name(s)"),
    "family_name": _nullable_string(256, "the family name(s)"),
    "locale": _nullable_string(35, "a BCP 47 language tag, e.g. en-GB"),
    "roles": {
        "type": "array",
        "maxItems": 64,
        "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "description": "the access token's `roles` claim (RFC 9068 §2.2.3.1); replaces the list",
    },
}


NO_STORE = {
    "Cache-Control": {"schema": {"type": "string", "const": "no-store"}},
}

ERROR_TEXT = {
    400: "invalid_request (or the grant's own code: invalid_grant, invalid_scope, ...; DPoP: "
    "invalid_dpop_proof, or use_dpop_nonce with a DPoP-Nonce header)",
    401: "invalid_client (Basic challenge) or invalid_token (Bearer challenge; DPoP challenge "
    "for a DPoP-bound token: invalid_token, invalid_dpop_proof, or use_dpop_nonce with a "
    "DPoP-Nonce header)",
    403: "insufficient_scope, or invalid_request for a cookie from an origin not allowed",
    404: "not_found",
    409: "the name or key state conflicts",
    413: "the body is over 16 KiB",
    415: "a media type other than form or JSON",
    429: "slow_down: login or registration throttling; wait Retry-After seconds",
    503: "temporarily_unavailable: the database cannot answer now; retry",
}


def _errors(*statuses: int) -> dict[str, Schema]:
    """Error responses: the JSON of API.md, `Cache-Control: no-store`."""
    found = {
        str(status): {
            "description": ERROR_TEXT[status],
            "headers": NO_STORE,
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        for status in (*statuses, 503)
    }
    # Anything the transport adds (408, 413, 431, 414, 503 past the connection cap) is an Error.
    found["default"] = {
        "description": "any other error, with the same body",
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    return found


def _json(schema: Schema, description: str, status: int = 200, **extra: Any) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": schema}},
            **extra,
        }
    }


def _form_or_json(schema: Schema) -> Schema:
    return {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {"schema": schema},
            "application/json": {"schema": schema},
        },
    }


def _json_body(schema: Schema, required: bool = False) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _page_errors(*statuses: int) -> dict[str, Schema]:
    """The errors of a page a person sees: pages too, same status (and Retry-After), except
    what the transport answers before any page (the default: the Error JSON)."""
    found = {
        str(status): {
            "description": ERROR_TEXT[status] + " (a page)",
            "headers": NO_STORE,
            "content": {"text/html": {}},
        }
        for status in (*statuses, 503)
    }
    found["default"] = _errors()["default"]
    return found


def _form_body(*fields: str) -> Schema:
    form = {"type": "object", "properties": _strings(*fields)}
    return {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": form}}}


NO_CONTENT = {"204": {"description": "done (also when there was nothing to do)"}}
REDIRECT_302 = {"302": {"description": "a redirect (Location): to the client, or to /login"}}


def HTML_PAGE(status: str, description: str) -> dict[str, Any]:  # noqa: N802 - a constant
    """A page for the browser."""
    return {status: {"description": description, "content": {"text/html": {}}}}


ACCOUNT_SIGN_IN = {"303": {"description": "no live login session: to /login?then=account"}}
ACCOUNT_FORBIDDEN = HTML_PAGE("403", "the CSRF token or the Origin does not match")


def _account_form(*fields: str) -> dict[str, Any]:
    """A form of the account page (or the consent page): its fields and the CSRF token."""
    schema = {"type": "object", "properties": _strings(*fields, "csrf_token")}
    return {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


PASSKEY_CALL = (
    "A JSON call of the page's script: the page's CSRF token in X-CSRF-Token and a same-origin"
    " Origin, else 403."
)
CSRF_HEADER = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
}
PASSKEY_JSON = {"type": "object"}
PASSKEY_ANSWER = {
    "type": "object",
    "description": "PublicKeyCredential.toJSON(); members not used are ignored",
}


BASIC: list[dict[str, list[str]]] = [{"clientBasic": []}, {}]  # or client_id/secret in the body
# An access token as Bearer, or DPoP-bound as `Authorization: DPoP` with a proof (RFC 9449 §7).
BEARER: list[dict[str, list[str]]] = [{"bearer": []}, {"dpop": []}]
# RFC 9449 §4.1: a proof JWT in the DPoP header (/token: binds the tokens; elsewhere, with
# `Authorization: DPoP <token>`, proves the key the token is bound to).
DPOP_HEADER: Schema = {
    "name": "DPoP",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "a DPoP proof (RFC 9449 §4): typ dpop+jwt, ES256 or EdDSA; with "
    "AUTHSERVER_DPOP_NONCE=on it carries the latest DPoP-Nonce (§8)",
}
# RFC 9449 §8.2: with AUTHSERVER_DPOP_NONCE=on, on every answer to a request with a proof.
DPOP_NONCE: Schema = {
    "DPoP-Nonce": {
        "schema": {"type": "string"},
        "description": "with AUTHSERVER_DPOP_NONCE=on and a DPoP proof: the nonce for the next",
    }
}
ADMIN: list[dict[str, list[str]]] = [{"bearer": ["admin"]}, {"dpop": ["admin"]}]
ADMIN_ERRORS = _errors(400, 401, 403)

PATH_KID = {"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}}
PATH_SUB = {"name": "sub", "in": "path", "required": True, "schema": {"type": "string"}}
PATH_CLIENT = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}
PATH_SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
PATH_RESOURCE = {
    "name": "resource",
    "in": "path",
    "required": True,
    "description": "the resource's identifier, percent-encoded (its slashes too)",
    "schema": {"type": "string"},
}
PAGING = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
    },
    {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": 256}},
]

# What a login's answer leads to (OpenAPI links): its refresh token refreshes, introspects and
# revokes; schemathesis follows them (tests/http/test_schemathesis.py).
LOGIN_LINKS = {
    "refresh": {
        "operationId": "refresh",
        "requestBody": {
            "refresh_token": "$response.body#/refresh_token",
            "client_id": "$request.body#/client_id",
        },
    },
    "introspect": {
        "operationId": "introspect",
        "requestBody": {"token": "$response.body#/access_token"},
    },
    "revoke": {
        "operationId": "revoke",
        "requestBody": {
            "token": "$response.body#/refresh_token",
            "client_id": "$request.body#/client_id",
        },
    },
}

END_SESSION_FIELDS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
END_SESSION_ANSWERS: dict[str, Any] = {
    "303": {"description": "ended: on to the registered post-logout URI"},
    **HTML_PAGE(
        "200",
        "ended: the signed-out page; or, not ended, the page asking to confirm (no"
        " id_token_hint of the signed-in user)",
    ),
    **HTML_PAGE("400", "a post-logout URI not registered, a bad hint: nothing ended"),
    **_page_errors(),
}

# One entry per route of http/routes.py: (METHOD, path) -> the OpenAPI operation.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/.well-known/jwks.json"): {
        "summary": "The public signing keys (RFC 7517): active, next and retired ones.",
        "tags": ["discovery"],
        "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
        "responses": {
            "200": {
                "description": "the key set; Cache-Control public, max-age, ETag",
                "content": {"application/jwk-set+json": {"schema": _ref("Jwks")}},
            },
            "304": {"description": "the key set is unchanged since the ETag given"},
            **_errors(),
        },
    },
    ("GET", "/.well-known/oauth-authorization-server"): {
        "summary": "Authorization server metadata (RFC 8414).",
        "tags": ["discovery"],
        "responses": {**_json(_ref("Metadata"), "the metadata"), **_errors()},
    },
    ("GET", "/.well-known/openid-configuration"): {
        "summary": "The same metadata under OpenID Connect Discovery's name.",
        "tags": ["discovery"],
        "responses": {**_json(_ref("Metadata"), "the metadata"), **_errors()},
    },
    ("GET", "/openapi.json"): {
        "summary": "This document.",
        "tags": ["discovery"],
        "responses": {**_json({"type": "object"}, "OpenAPI 3.1"), **_errors()},
    },
    ("GET", "/authorize"): {
        "summary": "Starts a sign-in (authorization code + PKCE S256, OpenID Connect).",
        "tags": ["sign-in"],
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in (
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method",
                "nonce",
                "prompt",
                "max_age",
                "resource",  # RFC 8707: may repeat, one per resource
                "acr_values",
                "dpop_jkt",  # RFC 9449 §10: the code's exchange needs a proof of this key
            )
        ],
        "responses": {
            **REDIRECT_302,
            **HTML_PAGE("400", "unknown client or redirect URI: an error page, never a redirect"),
            **_page_errors(),
        },
    },
    ("GET", "/login"): {
        "summary": "The hosted sign-in page for a pending authorization request.",
        "tags": ["sign-in"],
        "responses": {
            **HTML_PAGE("200", "the sign-in form"),
            **REDIRECT_302,
            **HTML_PAGE("400", "an error page"),
            **_page_errors(),
        },
    },
    ("POST", "/login"): {
        "summary": "The sign-in form's answer: username, password and the CSRF token.",
        "tags": ["sign-in"],
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": _strings("username", "password", "csrf_token"),
                    }
                }
            },
        },
        "responses": {
            "303": {"description": "signed in: on to the client with a code"},
            **HTML_PAGE("400", "the form again with one error sentence, an error page"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **HTML_PAGE("429", "throttled: the form again, with Retry-After"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/login/factor"): {
        "summary": "The sign-in's second step: the code form, for a user with a second factor.",
        "description": (
            "Reached by POST /login's 303 for a user with an authenticator app, carrying the"
            " authorization request's query string; needs the pending sign-in's cookie (5"
            " minutes), else 303 back to /login. Also /authorize's 302 for a step-up"
            " (acr_values=mfa, or a require_mfa client, and a login session signed in with the"
            " password alone): then the login session is the state, and the code upgrades it."
        ),
        "tags": ["sign-in"],
        "responses": {
            **HTML_PAGE("200", "the code form"),
            **REDIRECT_302,
            "303": {"description": "no pending sign-in: back to /login"},
            **HTML_PAGE("400", "an error page"),
            **_page_errors(),
        },
    },
    ("POST", "/login/factor"): {
        "summary": "The code form's answer: a TOTP code or a recovery code, and the CSRF token.",
        "tags": ["sign-in"],
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": _strings("code", "csrf_token")}
                }
            },
        },
        "responses": {
            "303": {"description": "signed in: on to the client with a code; or back to /login"},
            **HTML_PAGE("400", "the form again with one error sentence, an error page"),
            **HTML_PAGE("403", "the CSRF token, the Origin or the pending cookie does not match"),
            **HTML_PAGE("429", "throttled: the form again, with Retry-After"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/login/enrol"): {
        "summary": "The sign-in's setup step: add an authenticator app (AUTHSERVER_MFA=required).",
        "description": (
            "Reached by POST /login's 303 for a user without a second factor when"
            " AUTHSERVER_MFA=required, carrying the authorization request's query string; shows"
            " a new secret (an inline SVG QR code and the key as text). Needs the pending"
            " sign-in's cookie (5 minutes), else 303 back to /login."
        ),
        "tags": ["sign-in"],
        "responses": {
            **HTML_PAGE("200", "the setup page"),
            **REDIRECT_302,
            "303": {"description": "no pending sign-in to enrol: back to /login"},
            **HTML_PAGE("400", "an error page"),
            **_page_errors(),
        },
    },
    ("POST", "/login/enrol"): {
        "summary": "The setup page's answer: the sealed secret, a code from the app, CSRF token.",
        "tags": ["sign-in"],
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": _strings("enrolment", "code", "csrf_token"),
                    }
                }
            },
        },
        "responses": {
            **HTML_PAGE(
                "200", "signed in: the recovery codes, once, and a link back to the request"
            ),
            "303": {"description": "no pending sign-in to enrol: back to /login"},
            **HTML_PAGE("400", "the setup page again with one error sentence, an error page"),
            **HTML_PAGE("403", "the CSRF token, the Origin or the pending cookie does not match"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/account"): {
        "summary": "The account page: the user's sessions, a password change, sign-out.",
        "description": (
            "Signed in by the login-session cookie; without a live one, 303 to"
            " /login?then=account, which comes back here after the sign-in."
        ),
        "tags": ["sign-in"],
        "parameters": [{"name": "done", "in": "query", "schema": {"type": "string"}}],
        "responses": {
            **HTML_PAGE("200", "the account page"),
            **ACCOUNT_SIGN_IN,
            # A query no database can store (a NUL) is answered as a page too (http/params.py).
            **_page_errors(400),
        },
    },
    ("POST", "/account/password"): {
        "summary": "The account page's password change: the current password and a new one.",
        "tags": ["sign-in"],
        "requestBody": _account_form("current_password", "new_password"),
        "responses": {
            "303": {"description": "changed (back to /account), or no live login session (/login)"},
            **HTML_PAGE("400", "the page again: the current password wrong or the new one weak"),
            **ACCOUNT_FORBIDDEN,
            **HTML_PAGE("429", "throttled: the page again, with Retry-After"),
            **_page_errors(413, 415),
        },
    },
    ("POST", "/account/sessions/end"): {
        "summary": "Ends one of the user's sessions: a browser's sign-in or an app's.",
        "tags": ["sign-in"],
        "requestBody": _account_form("kind", "id"),
        "responses": {
            "303": {"description": "ended (back to /account, or /login for this browser)"},
            **ACCOUNT_FORBIDDEN,
            **HTML_PAGE("404", "no live session of the user has this id"),
            **_page_errors(400, 413, 415),
        },
    },
    ("POST", "/account/sign-out-everywhere"): {
        "summary": "Ends every session of the user, this browser's too.",
        "tags": ["sign-in"],
        "requestBody": _account_form(),
        "responses": {
            **HTML_PAGE("200", "signed out"),
            **ACCOUNT_SIGN_IN,
            **ACCOUNT_FORBIDDEN,
            **_page_errors(400, 413, 415),
        },
    },
    ("POST", "/account/totp"): {
        "summary": "Starts adding an authenticator app: the setup page (QR code and key).",
        "tags": ["sign-in"],
        "requestBody": _account_form(),
        "responses": {
            **HTML_PAGE("200", "the setup page: an inline SVG QR code, the key, a code field"),
            **ACCOUNT_SIGN_IN,
            **ACCOUNT_FORBIDDEN,
            **_page_errors(400, 413, 415),
        },
    },
    ("POST", "/account/totp/confirm"): {
        "summary": "Turns the authenticator app on with one of its codes.",
        "tags": ["sign-in"],
        "requestBody": _account_form("enrolment", "code"),
        "responses": {
            **HTML_PAGE("200", "on: the 10 recovery codes, shown this once"),
            **HTML_PAGE("400", "a wrong code, or the setup expired: the setup page again"),
            **ACCOUNT_SIGN_IN,
            **ACCOUNT_FORBIDDEN,
            **_page_errors(413, 415),
        },
    },
    ("POST", "/account/factors/remove"): {
        "summary": "Turns two-step verification off, with the current password.",
        "tags": ["sign-in"],
        "requestBody": _account_form("current_password"),
        "responses": {
            "303": {"description": "off: back to /account?done=factors_removed"},
            **HTML_PAGE("400", "a wrong current password: the account page again"),
            **HTML_PAGE("429", "throttled: the account page again, with Retry-After"),
            **ACCOUNT_FORBIDDEN,
            **_page_errors(413, 415),
        },
    },
    # Passkeys (API.md "Passkeys"): JSON calls of the pages' script, CSRF-bound by the page's
    # token in X-CSRF-Token and a same-origin Origin.
    ("POST", "/account/passkeys/options"): {
        "summary": "Starts registering a passkey: PublicKeyCredentialCreationOptionsJSON.",
        "description": PASSKEY_CALL,
        "tags": ["sign-in"],
        "parameters": [CSRF_HEADER],
        "responses": {
            **_json(
                PASSKEY_JSON,
                "creation options (residentKey preferred, user verification"
                " required, RP ID the issuer's host), a challenge held 5 minutes",
                headers=NO_STORE,
            ),
            **_errors(401, 403),
        },
    },
    ("POST", "/account/passkeys"): {
        "summary": "Registers the passkey: the browser's PublicKeyCredential.toJSON(), and a name.",
        "description": PASSKEY_CALL,
        "tags": ["sign-in"],
        "parameters": [CSRF_HEADER],
        "requestBody": _json_body(PASSKEY_ANSWER),
        "responses": {
            **_json(
                {"type": "object", "properties": _strings("id", "name")},
                "registered",
                201,
                headers=NO_STORE,
            ),
            **_errors(400, 401, 403, 409, 413),
        },
    },
    ("POST", "/account/passkeys/remove"): {
        "summary": "Removes one of the user's passkeys (the account page's form).",
        "tags": ["sign-in"],
        "requestBody": _account_form("id"),
        "responses": {
            "303": {"description": "removed: back to /account?done=passkey_removed"},
            **HTML_PAGE("404", "no such passkey of the user's"),
            **HTML_PAGE("409", "the user's last second factor: turned off with the password"),
            **ACCOUNT_FORBIDDEN,
            **_page_errors(400, 413, 415),
        },
    },
    ("GET", "/consent"): {
        "summary": "The consent page: a third-party client asks the signed-in user.",
        "description": (
            "Reached by /authorize's (or the sign-in's) redirect for a client with consent:"
            " true whose remembered grant does not cover the scopes and resources asked (or"
            " prompt=consent), carrying the authorization request's query string, checked again"
            " as /authorize checks it. Shows the client's name, the host of its redirect URI"
            " and what it asks, in words. Without a live login session: 303 to /login."
        ),
        "tags": ["sign-in"],
        "responses": {
            **HTML_PAGE("200", "the consent form (Allow, Deny)"),
            **REDIRECT_302,
            "303": {"description": "no live login session: to /login with the request"},
            **HTML_PAGE("400", "an error page: no request, or a client that asks no consent"),
            **_page_errors(),
        },
    },
    ("POST", "/consent"): {
        "summary": "The consent form's answer: the decision and the CSRF token.",
        "description": (
            "allow: the user's grant for the client widens to what is asked (remembered), and"
            " the browser goes on to the redirect URI with a code. deny: to the redirect URI"
            " with error=access_denied. The request is the query string's, checked again."
        ),
        "tags": ["sign-in"],
        "requestBody": _account_form("decision"),  # allow or deny
        "responses": {
            "303": {"description": "to the redirect URI (code or access_denied), or to /login"},
            **HTML_PAGE("400", "no decision, or an error page"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **_page_errors(413, 415),
        },
    },
    ("POST", "/account/apps/revoke"): {
        "summary": "Revokes what the user allowed a third-party app (the account page's form).",
        "description": (
            "Forgets the grant and ends the app's refresh tokens for the user; the app's next"
            " authorization asks again."
        ),
        "tags": ["sign-in"],
        "requestBody": _account_form("client_id"),
        "responses": {
            "303": {"description": "revoked: back to /account?done=app_revoked"},
            **HTML_PAGE("404", "the user allowed that app nothing"),
            **ACCOUNT_FORBIDDEN,
            **_page_errors(400, 413, 415),
        },
    },
    ("POST", "/login/passkey/options"): {
        "summary": "Starts a passkey sign-in: PublicKeyCredentialRequestOptionsJSON.",
        "description": PASSKEY_CALL
        + " From the second-step page (the pending sign-in's token): one of that user's"
        " passkeys; from the sign-in page: any discoverable passkey. With"
        ' `{"step_up": true}` (the second-step page of a step-up, the login session\'s token):'
        " one of the signed-in user's passkeys, and POST /login/passkey, sent the same member,"
        " steps that login session up.",
        "tags": ["sign-in"],
        "parameters": [CSRF_HEADER],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {"step_up": {"type": "boolean"}}}
                }
            },
        },
        "responses": {
            **_json(
                PASSKEY_JSON,
                "request options (user verification required), a challenge held 5 minutes",
                headers=NO_STORE,
            ),
            **_errors(400, 403, 413, 429),
        },
    },
    ("POST", "/login/passkey"): {
        "summary": "Signs in with the passkey's assertion, continuing the authorization request.",
        "description": PASSKEY_CALL
        + " The authorization request travels in the query string, as on /login.",
        "tags": ["sign-in"],
        "parameters": [CSRF_HEADER],
        "requestBody": _json_body(PASSKEY_ANSWER),
        "responses": {
            **_json(
                {"type": "object", "properties": _strings("redirect"), "required": ["redirect"]},
                "signed in (or to start again): where the browser goes next",
                headers=NO_STORE,
            ),
            **_errors(400, 403, 413, 429),
        },
    },
    ("GET", "/assets/passkeys.js"): {
        "summary": "The pages' passkey script (the one script they run, from this origin).",
        "tags": ["sign-in"],
        "responses": {
            "200": {
                "description": "the script",
                "content": {"text/javascript": {"schema": {"type": "string"}}},
            },
            **_errors(),
        },
    },
    ("GET", "/signup"): {
        "summary": "The sign-up page, carrying a pending authorization request like /login. "
        "404 with AUTHSERVER_SIGNUP=off.",
        "tags": ["sign-in"],
        "responses": {
            **HTML_PAGE("200", "the sign-up form"),
            **REDIRECT_302,
            **HTML_PAGE("400", "an error page: the authorization request cannot be trusted"),
            **_page_errors(),
        },
    },
    ("POST", "/signup"): {
        "summary": "Makes an account (the password policy applies). open: signed in, on to the "
        "client or /account; verified: a page saying a link is on its way. A taken address "
        "answers as a free one.",
        "tags": ["sign-in"],
        "requestBody": _form_body("username", "email", "password", "csrf_token"),
        "responses": {
            **HTML_PAGE("200", "verified: check your mail"),
            "303": {"description": "open: signed in, on to the client with a code or to /account"},
            **HTML_PAGE("400", "the form again: a taken username, a weak password, an error page"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **HTML_PAGE("429", "too many requests from this address group or for this address"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/password-reset"): {
        "summary": "Asks for a password reset link: one field, the email address. 404 with "
        "mail off.",
        "tags": ["sign-in"],
        "responses": {**HTML_PAGE("200", "the form"), **_page_errors()},
    },
    ("POST", "/password-reset"): {
        "summary": "Queues a reset link for the address: the same page whether an account uses "
        "it or not.",
        "tags": ["sign-in"],
        "requestBody": _form_body("email", "csrf_token"),
        "responses": {
            **HTML_PAGE("200", "if an account uses this address, a link is on its way"),
            **HTML_PAGE("400", "the form again: not an email address"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **HTML_PAGE("429", "too many requests from this address group or for this address"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/password-reset/confirm"): {
        "summary": "The reset link's page: a form whose one button posts the token. A GET "
        "never spends it.",
        "tags": ["sign-in"],
        "responses": {
            **HTML_PAGE("200", "the new password form"),
            **HTML_PAGE("400", "an error page: a token far too long"),
            **_page_errors(),
        },
    },
    ("POST", "/password-reset/confirm"): {
        "summary": "Spends the link: sets the new password (the policy applies) and ends every "
        "session of the user.",
        "tags": ["sign-in"],
        "requestBody": _form_body("token", "password", "csrf_token"),
        "responses": {
            **HTML_PAGE("200", "the password is set"),
            **HTML_PAGE("400", "the form again (the policy), or the link is dead"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **HTML_PAGE("429", "too many requests from this address group"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/account/email"): {
        "summary": "The email change form (signed in through the login session; else 303 to "
        "/login). 404 with mail off.",
        "tags": ["sign-in"],
        "responses": {**HTML_PAGE("200", "the form"), **REDIRECT_302, **_page_errors()},
    },
    ("POST", "/account/email"): {
        "summary": "Asks for a new address: a link to it, word of it to the current one; the "
        "current address stays until the link is opened.",
        "tags": ["sign-in"],
        "requestBody": _form_body("email", "password", "csrf_token"),
        "responses": {
            **HTML_PAGE("200", "a link is on its way (also for an address in use)"),
            **HTML_PAGE("400", "the form again: not an address, or the password is wrong"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **HTML_PAGE("429", "too many requests"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/verify-email"): {
        "summary": "The verification link's page: one button posts the token. A GET never "
        "spends it.",
        "tags": ["sign-in"],
        "responses": {**HTML_PAGE("200", "the button"), **_page_errors()},
    },
    ("POST", "/verify-email"): {
        "summary": "Spends the link: its address becomes the user's email, verified.",
        "tags": ["sign-in"],
        "requestBody": _form_body("token", "csrf_token"),
        "responses": {
            **HTML_PAGE("200", "the address is the user's"),
            **HTML_PAGE("400", "the link is dead"),
            **HTML_PAGE("403", "the CSRF token or the Origin does not match"),
            **HTML_PAGE("409", "another account uses the address now"),
            **HTML_PAGE("429", "too many requests"),
            **_page_errors(413, 415),
        },
    },
    ("GET", "/assets/signin.css"): {
        "summary": "The sign-in pages' stylesheet.",
        "tags": ["sign-in"],
        "responses": {
            "200": {
                "description": "the stylesheet",
                "content": {"text/css": {"schema": {"type": "string"}}},
            },
            **_errors(),
        },
    },
    **{
        ("GET", path): {
            "summary": "The hosted pages' icon (SVG).",
            "tags": ["sign-in"],
            "responses": {
                "200": {
                    "description": "the icon",
                    "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                },
                **_errors(),
            },
        }
        for path in ("/assets/favicon.svg", "/favicon.ico")
    },
    **{
        (method, "/userinfo"): {
            "summary": "The signed-in user's claims (OpenID Connect Core §5.3).",
            "tags": ["sign-in"],
            "security": BEARER,
            "parameters": [DPOP_HEADER],
            "responses": {
                **_json(_ref("UserInfo"), "the claims", headers=DPOP_NONCE),
                **_errors(401, 403),
            },
        }
        for method in ("GET", "POST")
    },
    ("GET", "/end-session"): {
        "summary": "RP-initiated logout: ends the login session and what it started.",
        "description": (
            "Without an id_token_hint naming the signed-in user, a browser with a login session"
            " is asked first: a page whose form POSTs the request back with a CSRF token."
        ),
        "tags": ["sign-in"],
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in END_SESSION_FIELDS
        ],
        "responses": END_SESSION_ANSWERS,
    },
    ("POST", "/end-session"): {
        "summary": "RP-initiated logout as a form post, or the sign-out page's confirmation.",
        "description": (
            "The fields of GET, or the confirmation page's form: with csrf_token (which must"
            " match the browser's CSRF cookie, else 403 and nothing ended) the session ends."
            " Without the login-session cookie (SameSite=Lax: another site's form post comes"
            " without it), nothing ends: 200 and a page that posts the fields again from this"
            " origin, with a `resent` token bound to the browser like csrf_token."
        ),
        "tags": ["sign-in"],
        "requestBody": _form_or_json(
            {"type": "object", "properties": _strings(*END_SESSION_FIELDS, "csrf_token", "resent")}
        ),
        "responses": {
            **END_SESSION_ANSWERS,
            **HTML_PAGE("403", "the confirmation's (or resent) token or Origin does not match"),
            **_page_errors(413, 415),
        },
    },
    ("POST", "/token"): {
        "summary": "The token endpoint (RFC 6749): every grant, authorization_code included.",
        "operationId": "token",
        "tags": ["tokens"],
        "security": BASIC,
        "parameters": [DPOP_HEADER],
        "requestBody": _form_or_json(_ref("TokenRequest")),
        "responses": {
            **_json(
                _ref("TokenResponse"),
                "tokens; a cookie client's refresh token in Set-Cookie",
                headers={**NO_STORE, **DPOP_NONCE},
                links=LOGIN_LINKS,
            ),
            **_errors(400, 401, 403, 413, 415, 429),
        },
    },
    ("POST", "/refresh"): {
        "summary": "The SPA's refresh: the refresh token from the cookie (or the body).",
        "operationId": "refresh",
        "tags": ["tokens"],
        "security": BASIC,
        "parameters": [DPOP_HEADER],
        "requestBody": _form_or_json(_ref("RefreshRequest")),
        "responses": {
            **_json(_ref("TokenResponse"), "tokens", headers={**NO_STORE, **DPOP_NONCE}),
            **_errors(400, 401, 403, 413, 415),
        },
    },
    ("POST", "/logout"): {
        "summary": "Revokes the refresh token's family and denies the access token.",
        "tags": ["sessions"],
        "security": [*BEARER, {}],
        "parameters": [DPOP_HEADER],
        "requestBody": _form_or_json(_ref("RefreshRequest")),
        # 401: a DPoP-bound token as Bearer, or without a proof of its key (nothing ended).
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 413, 415)},
    },
    ("POST", "/logout/all"): {
        "summary": "Revokes every session of the access token's user.",
        "tags": ["sessions"],
        "security": BEARER,
        "parameters": [DPOP_HEADER],
        "responses": {**NO_CONTENT, **_errors(401)},
    },
    ("POST", "/revoke"): {
        "summary": "Token revocation (RFC 7009): a refresh token's family, or an access token.",
        "operationId": "revoke",
        "tags": ["sessions"],
        "security": BASIC,
        "requestBody": _form_or_json(_ref("TokenQuery")),
        "responses": {
            **_json({"type": "object"}, "revoked, or nothing to revoke", headers=NO_STORE),
            **_errors(400, 401, 413, 415),
        },
    },
    ("POST", "/introspect"): {
        "summary": "Token introspection (RFC 7662), for confidential clients.",
        "operationId": "introspect",
        "tags": ["sessions"],
        "security": [{"clientBasic": []}, {}],
        "requestBody": _form_or_json(_ref("TokenQuery")),
        "responses": {
            **_json(_ref("Introspection"), "active with claims, or {active: false}"),
            **_errors(400, 401, 413, 415),
        },
    },
    ("GET", "/revocations"): {
        "summary": "The revocation feed: sessions revoked and access tokens denied lately.",
        "tags": ["sessions"],
        "security": [{"clientBasic": []}],
        "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
        "responses": {
            **_json(_ref("RevocationFeed"), "the feed; ETag, Cache-Control private, max-age=5"),
            "304": {"description": "unchanged since the ETag given"},
            **_errors(400, 401),
        },
    },
    ("GET", "/admin/keys"): {
        "summary": "Every signing key and its state.",
        "tags": ["admin"],
        "security": ADMIN,
        "responses": {**_json(_ref("KeyList"), "the keys"), **ADMIN_ERRORS},
    },
    ("POST", "/admin/keys/rotate"): {
        "summary": "Next key becomes active, active retired, a new next key published.",
        "tags": ["admin"],
        "security": ADMIN,
        "requestBody": _json_body(_ref("RotateRequest")),
        "responses": {
            **_json(_ref("KeyList"), "the keys after the rotation"),
            **_errors(400, 401, 403, 409, 413, 415),
        },
    },
    ("POST", "/admin/keys/{kid}/revoke"): {
        "summary": "Withdraws a key at once (compromise); the active key rotates first.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_KID],
        "responses": {**_json(_ref("KeyList"), "the keys after"), **_errors(400, 401, 403, 404)},
    },
    ("POST", "/admin/users"): {
        "summary": "Creates a user.",
        "tags": ["admin"],
        "security": ADMIN,
        "requestBody": _json_body(_ref("NewUser"), required=True),
        "responses": {
            **_json(_ref("CreatedUser"), "created", 201, headers=NO_STORE),
            **_errors(400, 401, 403, 409, 413, 415),
        },
    },
    ("POST", "/admin/users/{sub}/logout-all"): {
        "summary": "Revokes every session of the user.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("POST", "/admin/users/{sub}/disable"): {
        "summary": "Disables the user's login and revokes every session.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("POST", "/admin/clients"): {
        "summary": "Registers a client; a confidential client's secret is shown once.",
        "tags": ["admin"],
        "security": ADMIN,
        "requestBody": _json_body(_ref("NewClient"), required=True),
        "responses": {
            **_json(_ref("CreatedClient"), "created", 201, headers=NO_STORE),
            **_errors(400, 401, 403, 409, 413, 415),
        },
    },
    ("GET", "/admin/clients"): {
        "summary": "Every client (never a secret), paged by client_id.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [*PAGING],
        "responses": {**_json(_ref("ClientPage"), "a page of clients"), **ADMIN_ERRORS},
    },
    ("GET", "/admin/clients/{client_id:path}"): {
        "summary": "One client (never a secret).",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_CLIENT],
        "responses": {**_json(_ref("Client"), "the client"), **_errors(400, 401, 403, 404)},
    },
    ("PATCH", "/admin/clients/{client_id:path}"): {
        "summary": "Changes a client; disabling revokes its families and access tokens.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_CLIENT],
        "requestBody": _json_body(_ref("ClientChanges"), required=True),
        "responses": {
            **_json(_ref("Client"), "the client after the change"),
            **_errors(400, 401, 403, 404, 413, 415),
        },
    },
    ("POST", "/admin/clients/{client_id}/secret"): {
        "summary": "A new secret, shown once; the old one works for old_secret_ttl seconds.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_CLIENT],
        "requestBody": _json_body(
            {"type": "object", "properties": {"old_secret_ttl": {"type": "integer"}}}
        ),
        "responses": {
            **_json(_ref("RotatedSecret"), "the new secret", headers=NO_STORE),
            **_errors(400, 401, 403, 404, 413, 415),
        },
    },
    ("DELETE", "/admin/clients/{client_id:path}"): {
        "summary": "Deletes a client: its families and access tokens are revoked.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_CLIENT],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("POST", "/register"): {
        "summary": "Dynamic client registration (RFC 7591): a third-party client registers "
        "itself (AUTHSERVER_REGISTRATION open, or token with an initial access token); 404 "
        "while off.",
        "tags": ["registration"],
        "security": [{"bearer": []}, {}],
        "requestBody": _json_body(_ref("ClientRegistration"), required=True),
        "responses": {
            **_json(_ref("RegisteredClient"), "registered", 201, headers=NO_STORE),
            **_errors(400, 401, 404, 413, 415, 429),
        },
    },
    ("GET", "/register/{client_id}"): {
        "summary": "The client's registration (RFC 7592 §2.1), with its registration access token.",
        "tags": ["registration"],
        "security": [{"bearer": []}],
        "parameters": [PATH_CLIENT],
        "responses": {
            **_json(_ref("RegisteredClient"), "the registration", headers=NO_STORE),
            **_errors(401, 404),
        },
    },
    ("PUT", "/register/{client_id}"): {
        "summary": "Replaces the client's metadata (RFC 7592 §2.2), checked as at registration.",
        "tags": ["registration"],
        "security": [{"bearer": []}],
        "parameters": [PATH_CLIENT],
        "requestBody": _json_body(_ref("ClientRegistration"), required=True),
        "responses": {
            **_json(_ref("RegisteredClient"), "the registration", headers=NO_STORE),
            **_errors(400, 401, 404, 413, 415),
        },
    },
    ("DELETE", "/register/{client_id}"): {
        "summary": "Deletes the client (RFC 7592 §2.3): its sessions end, its tokens are revoked.",
        "tags": ["registration"],
        "security": [{"bearer": []}],
        "parameters": [PATH_CLIENT],
        "responses": {**NO_CONTENT, **_errors(401, 404)},
    },
    ("POST", "/admin/resources"): {
        "summary": "Registers a resource server (RFC 8707): the audience of its tokens.",
        "tags": ["admin"],
        "security": ADMIN,
        "requestBody": _json_body(_ref("NewResource"), required=True),
        "responses": {
            **_json(_ref("Resource"), "registered", 201, headers=NO_STORE),
            **_errors(400, 401, 403, 409, 413, 415),
        },
    },
    ("GET", "/admin/resources"): {
        "summary": "Every resource server, paged by identifier.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [*PAGING],
        "responses": {**_json(_ref("ResourcePage"), "a page of resources"), **ADMIN_ERRORS},
    },
    ("GET", "/admin/resources/{resource:path}"): {
        "summary": "One resource server.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_RESOURCE],
        "responses": {**_json(_ref("Resource"), "the resource"), **_errors(400, 401, 403, 404)},
    },
    ("PATCH", "/admin/resources/{resource:path}"): {
        "summary": "Changes a resource's scopes or token lifetime (for tokens issued next).",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_RESOURCE],
        "requestBody": _json_body(_ref("ResourceChanges"), required=True),
        "responses": {
            **_json(_ref("Resource"), "the resource after the change"),
            **_errors(400, 401, 403, 404, 413, 415),
        },
    },
    ("DELETE", "/admin/resources/{resource:path}"): {
        "summary": "Deletes a resource: no token is issued for it any more.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_RESOURCE],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("GET", "/admin/users"): {
        "summary": "Every user, paged; `username` filters by prefix.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [
            *PAGING,
            {"name": "username", "in": "query", "schema": {"type": "string", "maxLength": 256}},
        ],
        "responses": {**_json(_ref("UserPage"), "a page of users"), **ADMIN_ERRORS},
    },
    ("GET", "/admin/users/{sub}"): {
        "summary": "One user.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "responses": {**_json(_ref("User"), "the user"), **_errors(400, 401, 403, 404)},
    },
    ("PATCH", "/admin/users/{sub}"): {
        "summary": "Changes a user's scopes, admin flag or disabled state.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "requestBody": _json_body(_ref("UserChanges"), required=True),
        "responses": {
            **_json(_ref("User"), "the user after the change"),
            **_errors(400, 401, 403, 404, 413, 415),
        },
    },
    ("PUT", "/admin/users/{sub}/password"): {
        "summary": "Sets a password under the password policy; sessions end by default.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "requestBody": _json_body(
            {
                "type": "object",
                "required": ["password"],
                "properties": {
                    "password": {"type": "string"},
                    "revoke_sessions": {"type": "boolean"},
                },
            },
            required=True,
        ),
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404, 413, 415)},
    },
    ("DELETE", "/admin/users/{sub}"): {
        "summary": "Deletes a user: every session ends; the username is free again.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("DELETE", "/admin/users/{sub}/factors"): {
        "summary": "Removes the user's second factors and recovery codes; every session ends.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("GET", "/admin/users/{sub}/sessions"): {
        "summary": "The user's live sessions.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SUB],
        "responses": {**_json(_ref("SessionList"), "the sessions"), **_errors(400, 401, 403, 404)},
    },
    ("POST", "/admin/sessions/{sid}/revoke"): {
        "summary": "Revokes one session (refresh-token family).",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [PATH_SID],
        "responses": {**NO_CONTENT, **_errors(400, 401, 403, 404)},
    },
    ("GET", "/sessions"): {
        "summary": "The caller's own live sessions; `current` marks the token's own.",
        "tags": ["sessions"],
        "security": BEARER,
        "parameters": [DPOP_HEADER],
        "responses": {**_json(_ref("SessionList"), "the sessions"), **_errors(401)},
    },
    ("DELETE", "/sessions/{sid}"): {
        "summary": "Ends one of the caller's own sessions.",
        "tags": ["sessions"],
        "security": BEARER,
        "parameters": [PATH_SID, DPOP_HEADER],
        # 400: a sid no store can hold (http/params.py).
        "responses": {**NO_CONTENT, **_errors(400, 401, 404)},
    },
    ("GET", "/admin/audit"): {
        "summary": "The audit trail, newest first, paged by `before`.",
        "tags": ["admin"],
        "security": ADMIN,
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
            },
            {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {"name": "user", "in": "query", "schema": {"type": "string", "maxLength": 256}},
            {"name": "family", "in": "query", "schema": {"type": "string", "maxLength": 256}},
            {"name": "type", "in": "query", "schema": {"type": "string", "maxLength": 256}},
        ],
        "responses": {**_json(_ref("AuditPage"), "a page of events"), **ADMIN_ERRORS},
    },
    ("GET", "/healthz"): {
        "summary": "The process answers (liveness).",
        "tags": ["operations"],
        "responses": {**_json(_ref("Status"), "alive"), **_errors()},
    },
    ("GET", "/readyz"): {
        "summary": "The database answers and an active key is loaded (readiness).",
        "tags": ["operations"],
        "responses": {**_json(_ref("Status"), "ready"), **_errors()},
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics, text format.",
        "tags": ["operations"],
        "responses": {
            "200": {
                "description": "the metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(),
        },
    },
}

NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}
# API.md, "Clients, added" (accounts): the name on the hosted pages, the client's own origins.
CLIENT_META: dict[str, Schema] = {
    "client_name": {
        "type": ["string", "null"],
        "maxLength": 100,
        "description": "shown on the hosted pages instead of the client_id; null or empty: none",
    },
    "allowed_origins": {
        "type": "array",
        "items": {"type": "string", "examples": ["https://app.example"]},
        "description": "browser origins (scheme://host[:port]) allowed for CORS and the cookie "
        "endpoints of this client, besides AUTHSERVER_ALLOWED_ORIGINS",
    },
    "require_mfa": {
        "type": "boolean",
        "default": False,
        "description": "sessions with a second factor only: /authorize asks a signed-in user "
        "with a factor for it and answers access_denied for a user without one; not with the "
        "password grant",
    },
    "dpop_bound_access_tokens": {
        "type": "boolean",
        "description": "RFC 9449 §5.2: /token refuses this client's requests without a DPoP "
        "proof (invalid_dpop_proof)",
    },
    "resources": {
        "type": "array",
        "maxItems": 64,
        "items": {"type": "string", "examples": ["https://mcp.example/mcp"]},
        "description": "registered resources (RFC 8707) this client may name at /authorize and "
        "/token, any other being invalid_target; empty or absent: any registered resource",
    },
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error", "error_description"],
        "properties": _strings("error", "error_description"),
    },
    "Status": {"type": "object", "required": ["status"], "properties": _strings("status")},
    "Jwks": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid", "use", "alg"],
                    "properties": _strings("kty", "kid", "use", "alg", "n", "e", "crv", "x"),
                },
            }
        },
    },
    "Client": {
        "type": "object",
        "required": ["client_id", "public", "grant_types", "scopes", "disabled"],
        "properties": {
            **_strings("client_id", "refresh_delivery"),
            "public": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            "grant_types": {"type": "array", "items": {"type": "string"}},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "redirect_uris": {"type": "array", "items": {"type": "string"}},
            "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
            **CLIENT_META,
            "created_at": {"type": "integer"},
            "secret_rotated_at": {"type": ["integer", "null"]},
            "consent": {"type": "boolean", "description": "third-party: its users are asked"},
            "registration": {
                "type": ["string", "null"],
                "enum": ["open", "token", None],
                "description": "registered through POST /register in this mode; null: by an "
                "operator",
            },
        },
    },
    "ClientRegistration": {
        "type": "object",
        "description": "RFC 7591 §2 metadata; members not listed are ignored",
        "properties": {
            "client_id": {"type": "string", "description": "PUT only: the client's own"},
            "redirect_uris": {"type": "array", "maxItems": 64, "items": {"type": "string"}},
            "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
            "client_name": {"type": "string", "maxLength": 100},
            "grant_types": {
                "type": "array",
                "items": {"type": "string", "enum": ["authorization_code", "refresh_token"]},
            },
            "response_types": {"type": "array", "items": {"type": "string", "enum": ["code"]}},
            "token_endpoint_auth_method": {
                "type": "string",
                "enum": ["none", "client_secret_basic", "client_secret_post"],
                "description": "open mode: none only (its default)",
            },
            "scope": {"type": "string"},
            **_strings("client_uri", "logo_uri", "tos_uri", "policy_uri"),
            "application_type": {"type": "string", "enum": ["web", "native"]},
            "dpop_bound_access_tokens": CLIENT_META["dpop_bound_access_tokens"],
        },
    },
    "RegisteredClient": {
        "type": "object",
        "required": [
            "client_id",
            "client_id_issued_at",
            "registration_client_uri",
            "redirect_uris",
            "grant_types",
            "token_endpoint_auth_method",
        ],
        "properties": {
            **_strings(
                "client_id",
                "registration_client_uri",
                "token_endpoint_auth_method",
                "scope",
                "client_name",
                "client_uri",
                "logo_uri",
                "tos_uri",
                "policy_uri",
                "application_type",
            ),
            "client_id_issued_at": {"type": "integer"},
            "client_secret": {"type": "string", "description": "confidential clients; once"},
            "client_secret_expires_at": {"type": "integer", "const": 0},
            "registration_access_token": {"type": "string", "description": "POST only; once"},
            "redirect_uris": {"type": "array", "items": {"type": "string"}},
            "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
            "grant_types": {"type": "array", "items": {"type": "string"}},
            "response_types": {"type": "array", "items": {"type": "string"}},
            "dpop_bound_access_tokens": CLIENT_META["dpop_bound_access_tokens"],
        },
    },
    "Resource": {
        "type": "object",
        "required": ["resource", "scopes", "access_token_ttl"],
        "properties": {
            "resource": {
                "type": "string",
                "maxLength": 256,
                "description": "an absolute URI without a fragment (RFC 8707 §2): the aud",
            },
            "scopes": {"type": "array", "items": {"type": "string"}},
            "access_token_ttl": {"type": "integer", "minimum": 60},
        },
    },
    "NewResource": {
        "type": "object",
        "required": ["resource"],
        "properties": {
            "resource": {"type": "string", "maxLength": 256},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "access_token_ttl": {
                "type": "integer",
                "minimum": 60,
                "description": "at most AUTHSERVER_ACCESS_TOKEN_TTL, its default",
            },
        },
    },
    "ResourceChanges": {
        "type": "object",
        "properties": {
            "scopes": {"type": "array", "items": {"type": "string"}},
            "access_token_ttl": {"type": "integer", "minimum": 60},
        },
    },
    "ResourcePage": {
        "type": "object",
        "required": ["resources", "next_after"],
        "properties": {
            "resources": {"type": "array", "items": _ref("Resource")},
            "next_after": {"type": ["string", "null"]},
        },
    },
    "ClientPage": {
        "type": "object",
        "required": ["clients", "next_after"],
        "properties": {
            "clients": {"type": "array", "items": _ref("Client")},
            "next_after": {"type": ["string", "null"]},
        },
    },
    "ClientChanges": {
        "type": "object",
        "properties": {
            "grant_types": {"type": "array", "items": {"type": "string"}},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "redirect_uris": {"type": "array", "items": {"type": "string"}},
            "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
            **CLIENT_META,
            "refresh_delivery": {"type": "string", "enum": ["body", "cookie"]},
            "disabled": {"type": "boolean"},
        },
    },
    "RotatedSecret": {
        "type": "object",
        "required": ["client_id", "client_secret", "old_secret_expires_at"],
        "properties": {
            **_strings("client_id", "client_secret"),
            "old_secret_expires_at": {"type": "integer"},
        },
    },
    "User": {
        "type": "object",
        "required": ["sub", "scopes", "admin", "disabled"],
        "properties": {
            "sub": {"type": "string"},
            "username": {"type": ["string", "null"]},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "admin": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            "created_at": {"type": "integer"},
            "last_login_at": {
                "type": ["integer", "null"],
                "description": "the last sign-in (a password grant, or a hosted page's"
                " password, passkey, second factor or sign-up); null: none",
            },
            **PROFILE_PROPERTIES,
            # GET /admin/users/{sub} only: the kinds of second factor enrolled.
            "factors": {"type": "array", "items": {"type": "string", "enum": ["totp"]}},
        },
    },
    "UserPage": {
        "type": "object",
        "required": ["users", "next_after"],
        "properties": {
            "users": {"type": "array", "items": _ref("User")},
            "next_after": {"type": ["string", "null"]},
        },
    },
    "UserChanges": {
        "type": "object",
        "properties": {
            "scopes": {"type": "array", "items": {"type": "string"}},
            "admin": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            **PROFILE_PROPERTIES,
        },
    },
    "Session": {
        "type": "object",
        "required": ["sid", "client_id", "created_at", "expires_at", "current"],
        "properties": {
            **_strings("sid", "client_id"),
            "created_at": {"type": "integer"},
            "last_used_at": {"type": ["integer", "null"]},
            "expires_at": {"type": "integer"},
            "user_agent": {"type": ["string", "null"]},
            "current": {"type": "boolean"},
        },
    },
    "SessionList": {
        "type": "object",
        "required": ["sessions"],
        "properties": {"sessions": {"type": "array", "items": _ref("Session")}},
    },
    "UserInfo": {
        "type": "object",
        "required": ["sub"],
        "description": "sub, and the claims of the token's identity scopes that are set:"
        " profile gives preferred_username, name, given_name, family_name, locale; email gives"
        " email and email_verified",
        "properties": {
            **_strings(
                "sub", "preferred_username", "name", "given_name", "family_name", "locale", "email"
            ),
            "email_verified": {"type": "boolean"},
        },
    },
    "Metadata": {
        "type": "object",
        "required": ["issuer", "jwks_uri", "token_endpoint", "grant_types_supported"],
        "properties": {
            **_strings("issuer", "jwks_uri", "token_endpoint", "revocation_endpoint"),
            "introspection_endpoint": {"type": "string"},
            "grant_types_supported": {"type": "array", "items": {"type": "string"}},
            "scopes_supported": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {
                "type": "string",
                "enum": ["password", "refresh_token", "client_credentials", "authorization_code"],
            },
            **_strings(
                "username",
                "password",
                "client_id",
                "client_secret",
                "scope",
                "refresh_token",
                "code",
                "redirect_uri",
                "code_verifier",
                "resource",
            ),
        },
    },
    "RefreshRequest": {
        "type": "object",
        "properties": _strings("refresh_token", "client_id", "client_secret", "resource"),
    },
    "TokenQuery": {
        "type": "object",
        "required": ["token"],
        "properties": {
            **_strings("token", "client_id", "client_secret"),
            "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
        },
    },
    "TokenResponse": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "scope"],
        "properties": {
            **_strings("access_token", "scope", "refresh_token", "id_token"),
            # RFC 9449 §5: DPoP when the request carried a proof.
            "token_type": {"type": "string", "enum": ["Bearer", "DPoP"]},
            "expires_in": {"type": "integer"},
        },
    },
    "Introspection": {
        "type": "object",
        "required": ["active"],
        "properties": {
            "active": {"type": "boolean"},
            **_strings("sub", "client_id", "scope", "iss", "jti", "sid", "token_type"),
            "exp": {"type": "integer"},
            "iat": {"type": "integer"},
            "aud": {"type": ["string", "array"]},
            # RFC 9449 §6.2: a DPoP-bound token's key thumbprint.
            "cnf": {"type": "object", "properties": _strings("jkt")},
        },
    },
    "RevocationFeed": {
        "type": "object",
        "required": ["sids", "jtis"],
        "properties": {
            "sids": {"type": "array", "items": {"type": "string"}},
            "jtis": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Key": {
        "type": "object",
        "required": ["kid", "alg", "state", "created_at"],
        "properties": {
            **_strings("kid", "alg"),
            "state": {"type": "string", "enum": ["next", "active", "retired", "revoked"]},
            "created_at": {"type": "integer"},
            "activated_at": NULLABLE_INT,
            "retired_at": NULLABLE_INT,
            "revoked_at": NULLABLE_INT,
        },
    },
    "KeyList": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": _ref("Key")}},
    },
    "RotateRequest": {
        "type": "object",
        "properties": {
            "alg": {"type": "string", "enum": ["RS256", "EdDSA"]},
            "force": {"type": "boolean", "default": False},
        },
    },
    "NewUser": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            **_strings("username", "password"),
            "scopes": {"type": "array", "items": {"type": "string"}},
            "admin": {"type": "boolean", "default": False},
            **PROFILE_PROPERTIES,
        },
    },
    "CreatedUser": {
        "type": "object",
        "required": ["sub", "username"],
        "properties": _strings("sub", "username"),
    },
    "NewClient": {
        "type": "object",
        "required": ["client_id"],
        "properties": {
            "client_id": {"type": "string"},
            "public": {"type": "boolean", "default": False},
            "grant_types": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": ["password", "refresh_token", "client_credentials"],
                },
            },
            "scopes": {"type": "array", "items": {"type": "string"}},
            "refresh_delivery": {"type": "string", "enum": ["body", "cookie"]},
            "redirect_uris": {"type": "array", "items": {"type": "string"}},
            "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
            **CLIENT_META,
            "consent": {"type": "boolean", "default": False, "description": "third-party"},
        },
    },
    "CreatedClient": {
        "type": "object",
        "required": ["client_id", "public", "grant_types", "scopes", "refresh_delivery"],
        "properties": {
            "client_id": {"type": "string"},
            "public": {"type": "boolean"},
            "grant_types": {"type": "array", "items": {"type": "string"}},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "refresh_delivery": {"type": "string", "enum": ["body", "cookie"]},
            **CLIENT_META,
            "client_secret": {"type": "string", "description": "confidential clients; once"},
        },
    },
    "AuditEvent": {
        "type": "object",
        "required": ["id", "at", "actor", "type"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "integer"},
            "actor": {"type": "string"},
            "type": {"type": "string"},
            "target": NULLABLE_STRING,
            "user": NULLABLE_STRING,
            "family": NULLABLE_STRING,
            "detail": {},
        },
    },
    "AuditPage": {
        "type": "object",
        "required": ["events", "next_before"],
        "properties": {
            "events": {"type": "array", "items": _ref("AuditEvent")},
            "next_before": NULLABLE_INT,
        },
    },
}

# The admin console (http/console.py): pages for a person, signed in by the console's cookie.
CONSOLE_SIGN_IN = {
    "303": {
        "description": "no live console session, or (a destructive action's confirmation page)"
        " a sign-in older than 5 minutes or without the operator's second factor:"
        " to /console/sign-in"
    }
}
CONSOLE_REFUSED = HTML_PAGE("403", "the user may not use the console (no admin, or no mfa)")
CONSOLE_FORBIDDEN = HTML_PAGE(
    "403", "the CSRF token or the Origin does not match, or the user may not use the console"
)
CONSOLE_SEARCH = [
    {"name": name, "in": "query", "schema": {"type": "string", "maxLength": 256}}
    for name in ("q", "after", "done")
]


def _query_strings(*names: str) -> list[Schema]:
    """Query parameters, each a string."""
    return [{"name": name, "in": "query", "schema": {"type": "string"}} for name in names]


def _console_page(
    summary: str, parameters: list[Schema] | None = None, missing: str | None = None
) -> dict[str, Any]:
    """`missing`: when the page answers 404, what is missing then."""
    return {
        "summary": summary,
        "tags": ["console"],
        "parameters": parameters or [],
        "responses": {
            **HTML_PAGE("200", "the page"),
            **CONSOLE_SIGN_IN,
            **CONSOLE_REFUSED,
            **(HTML_PAGE("404", missing) if missing else {}),
            **_page_errors(400),
        },
    }


def _console_form(summary: str, *fields: str, done: str = "done: back to its page") -> Schema:
    return {
        "summary": summary,
        "tags": ["console"],
        "requestBody": _account_form(*fields),
        "responses": {
            "303": {
                "description": f"{done}; or no live console session, or a sign-in too old"
                " for a destructive action: to /console/sign-in"
            },
            **CONSOLE_FORBIDDEN,
            **HTML_PAGE("404", "no such client or user"),
            **_page_errors(400, 413, 415),
        },
    }


def _console_answered(summary: str, fields: list[str], answers: dict[str, Any]) -> Schema:
    """A console form answered with a page of its own (`answers`), not only a 303."""
    return {
        **_console_form(summary, *fields),
        "responses": {
            "303": {"description": "no live console session: to /console/sign-in"},
            **CONSOLE_FORBIDDEN,
            **answers,
            **_page_errors(400, 413, 415),
        },
    }


# The user forms' profile fields (API.md, "Accounts").
PROFILE_FORM = ("email", "email_verified", "name", "given_name", "family_name", "locale")


def _console_also(schema: Schema, answers: dict[str, Any]) -> Schema:
    """A console form's description with answers of its own besides the usual ones."""
    return {**schema, "responses": {**schema["responses"], **answers}}


OPERATIONS.update(
    {
        ("GET", "/console"): {
            "summary": "The admin console: to its clients page.",
            "tags": ["console"],
            "responses": {"303": {"description": "to /console/clients"}, **_page_errors()},
        },
        ("GET", "/console/sign-in"): {
            "summary": "Starts the console's sign-in: the server's own code flow with PKCE.",
            "tags": ["console"],
            "parameters": _query_strings("mfa", "recent", "then"),
            "responses": {
                "303": {"description": "to /authorize, with the console's sign-in cookie"},
                **_page_errors(400),
            },
        },
        ("GET", "/console/callback"): {
            "summary": "The console's redirect URI: the code exchanged inside the server.",
            "tags": ["console"],
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string"}}
                for name in ("code", "state", "iss", "error", "error_description")
            ],
            "responses": {
                "303": {
                    "description": "signed in: to /console/clients with the console cookie;"
                    " or to /console/sign-in (start again, or ask for the second factor)"
                },
                **CONSOLE_REFUSED,
                **_page_errors(400),
            },
        },
        ("POST", "/console/sign-out"): {
            "summary": "Ends the console session and its tokens.",
            "tags": ["console"],
            "requestBody": _account_form(),
            "responses": {
                **HTML_PAGE("200", "signed out"),
                **CONSOLE_FORBIDDEN,
                **_page_errors(400, 413, 415),
            },
        },
        ("GET", "/console/clients"): _console_page(
            "The clients, by client_id (keyset paging), searched by prefix.", CONSOLE_SEARCH
        ),
        ("GET", "/console/clients/new"): _console_page("The form that registers a client."),
        ("POST", "/console/clients"): _console_answered(
            "Registers a client (POST /admin/clients's use case).",
            ["client_id", "client_name", "public", "grant_types", "scopes", "redirect_uris"],
            {
                **HTML_PAGE("201", "registered: the secret, shown this once"),
                **HTML_PAGE("409", "the client_id is taken"),
            },
        ),
        ("GET", "/console/clients/edit"): _console_page(
            "The form that edits a client (name, redirect URIs, origins) and rotates its secret.",
            _query_strings("client_id"),
            missing="no client has this client_id",
        ),
        ("POST", "/console/clients/edit"): _console_form(
            "Edits a client (PATCH /admin/clients/{client_id}'s use case).",
            "client_id", "client_name", "redirect_uris", "allowed_origins",
        ),
        ("POST", "/console/clients/rotate-secret"): _console_answered(
            "Rotates a client's secret (POST /admin/clients/{client_id}/rotate-secret's).",
            ["client_id", "old_secret_ttl"],
            {
                **HTML_PAGE("200", "rotated: the new secret, shown this once"),
                **HTML_PAGE("404", "no client has this client_id"),
            },
        ),
        ("POST", "/console/clients/disable"): _console_form("Disables a client.", "client_id"),
        ("POST", "/console/clients/enable"): _console_form("Enables a client.", "client_id"),
        ("GET", "/console/clients/delete"): _console_page(
            "Asks before deleting a client.",
            [{"name": "client_id", "in": "query", "schema": {"type": "string"}}],
        ),
        ("POST", "/console/clients/delete"): _console_form("Deletes a client.", "client_id"),
        ("GET", "/console/users"): _console_page(
            "The users, by username (keyset paging), searched by prefix.", CONSOLE_SEARCH
        ),
        ("POST", "/console/users/disable"): _console_form(
            "Disables a user and ends every session of theirs.", "sub"
        ),
        ("POST", "/console/users/enable"): _console_form("Enables a user.", "sub"),
        ("GET", "/console/users/sessions"): _console_page(
            "A user's signed-in browsers and app sessions (refresh-token families).",
            _query_strings("sub", "done"),
            missing="no user has this sub",
        ),
        ("POST", "/console/users/sessions/end"): _console_form(
            "Ends one app session (POST /admin/sessions/{sid}/revoke's use case).", "sub", "sid"
        ),
        ("POST", "/console/users/sessions/end-all"): _console_form(
            "Ends every session of the user (POST /admin/users/{sub}/logout-all's use case).", "sub"
        ),
        ("GET", "/console/users/reset-factors"): _console_page(
            "Asks before removing a user's second factors.",
            _query_strings("sub"),
            missing="no user has this sub",
        ),
        ("POST", "/console/users/reset-factors"): _console_form(
            "Removes every second factor of the user and ends their sessions.", "sub"
        ),
        ("GET", "/console/users/new"): _console_page("The form that creates a user."),
        ("POST", "/console/users"): _console_also(
            _console_form(
                "Creates a user (POST /admin/users's use case); with admin, after a recent"
                " sign-in.",
                "username", "password", "scopes", "roles", "admin", *PROFILE_FORM,
                done="created: to the user's page",
            ),
            HTML_PAGE("409", "the username or the email address is taken"),
        ),
        ("GET", "/console/users/edit"): _console_page(
            "A user's page: their fields and roles, a new password, a reset link, delete.",
            _query_strings("sub", "done"),
            missing="no user has this sub",
        ),
        ("POST", "/console/users/edit"): _console_also(
            _console_form(
                "Edits a user with the fields changed (PATCH /admin/users/{sub}'s use case);"
                " granting admin after a recent sign-in.",
                "sub", "scopes", "roles", "admin", *PROFILE_FORM,
            ),
            HTML_PAGE("409", "the email address is another user's"),
        ),
        ("POST", "/console/users/password"): _console_form(
            "Sets a user's password (PUT /admin/users/{sub}/password's use case), after a"
            " recent sign-in.",
            "sub", "password", "revoke_sessions",
        ),
        ("POST", "/console/users/reset-link"): _console_also(
            _console_form(
                "Mails the user a password-reset link (the sign-in page's reset use case).",
                "sub",
            ),
            {
                **HTML_PAGE("404", "no user has this sub, or mail is off"),
                **HTML_PAGE("429", "too many reset links asked for: Retry-After"),
            },
        ),
        ("GET", "/console/users/delete"): _console_page(
            "Asks before deleting a user (after a recent sign-in).",
            _query_strings("sub"),
            missing="no user has this sub",
        ),
        ("POST", "/console/users/delete"): _console_form(
            "Deletes a user (DELETE /admin/users/{sub}'s use case), after a recent sign-in.", "sub"
        ),
        ("POST", "/console/users/sessions/end-browser"): _console_form(
            "Signs one browser of the user out (its login session and the apps it signed in).",
            "sub", "id",
        ),
        ("GET", "/console/registration-tokens/revoke"): _console_page(
            "Asks before revoking a registration token (after a recent sign-in).",
            _query_strings("token"),
            missing="no registration token that still works has this id",
        ),
        ("POST", "/console/registration-tokens/revoke"): _console_form(
            "Revokes a registration token, after a recent sign-in.", "token"
        ),
        ("GET", "/console/keys"): _console_page(
            "The signing key ring as a state diagram, with each key's times.",
            _query_strings("done"),
        ),
        ("POST", "/console/keys/rotate"): _console_answered(
            "Rotates the signing keys (POST /admin/keys/rotate's use case).",
            [],
            {
                "303": {"description": "rotated; or no live console session: to /console/sign-in"},
                **HTML_PAGE("409", "key_not_ready: the keys page with the wait, and Retry-After"),
            },
        ),
        ("GET", "/console/keys/revoke"): _console_page(
            "Asks before revoking a signing key.",
            _query_strings("kid"),
            missing="no key has this kid",
        ),
        ("POST", "/console/keys/revoke"): _console_form(
            "Revokes a signing key: it leaves the JWKS at once.", "kid"
        ),
        ("GET", "/console/resources"): _console_page(
            "The resource servers (RFC 8707), by identifier, and the form that registers one.",
            _query_strings("after", "done"),
        ),
        ("POST", "/console/resources"): _console_answered(
            "Registers a resource (POST /admin/resources's use case).",
            ["resource", "scopes", "access_token_ttl"],
            {
                "303": {"description": "registered; or no live console session: to sign-in"},
                **HTML_PAGE("409", "the resource is registered already"),
            },
        ),
        ("GET", "/console/resources/delete"): _console_page(
            "Asks before deleting a resource.",
            _query_strings("resource"),
            missing="no resource has this identifier",
        ),
        ("POST", "/console/resources/delete"): _console_form("Deletes a resource.", "resource"),
        ("GET", "/console/registration-tokens"): _console_page(
            "The form that makes an initial access token for dynamic client registration."
        ),
        ("POST", "/console/registration-tokens"): _console_answered(
            "Makes an initial access token (RFC 7591), as `clients registration-token` does.",
            ["ttl", "uses"],
            {**HTML_PAGE("201", "made: the token, shown this once")},
        ),
        ("GET", "/console/audit"): _console_page(
            "The audit trail, newest first, filtered by event type and user.",
            [
                {"name": name, "in": "query", "schema": {"type": "string"}}
                for name in ("type", "user", "before")
            ],
        ),
    }
)  # fmt: skip


# The admin API takes a DPoP-bound admin token with its proof (http/admin.admin_only).
for _operation in OPERATIONS.values():
    if _operation.get("security") is ADMIN:
        _operation["parameters"] = [*_operation.get("parameters", []), DPOP_HEADER]


def template(path: str) -> str:
    """A route's path as OpenAPI writes it: Starlette's `{name:path}` (a parameter that may
    hold slashes, /admin/resources/{resource:path}) is `{name}`."""
    return path.replace(":path}", "}")


def document(issuer: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(template(path), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authserver",
            "version": __version__,
            "description": "A standalone JWT authorization server. The contract: docs/api.md.",
        },
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "clientBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "client_id:client_secret (RFC 6749 §2.3.1); or the fields "
                    "client_id and client_secret in the body (client_secret_post)",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an access token of this server; admin endpoints need the "
                    "scope admin",
                },
                "dpop": {
                    "type": "http",
                    "scheme": "DPoP",
                    "description": "a DPoP-bound access token (RFC 9449 §7.1), with a proof "
                    "of its key carrying ath in the DPoP header",
                },
            },
        },
    }


async def openapi(request: Request) -> Response:
    issuer = services(request).settings.issuer
    body = json.dumps(document(issuer), separators=(",", ":")).encode()
    return Response(
        body, media_type="application/json", headers={"Cache-Control": "public, max-age=300"}
    )
