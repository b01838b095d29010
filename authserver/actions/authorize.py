"""GET /authorize: is this authorization request valid, and where does the browser go next?

RFC 6749 §4.1.1, RFC 7636 (PKCE, S256 only), RFC 9207 (`iss` in every response), OpenID
Connect Core §3.1.2 (`nonce`, `prompt`, `max_age`). Three answers:

- `ErrorPage`: the client or the redirect URI cannot be trusted, so nothing is sent there
  (RFC 6749 §4.1.2.1); the HTTP layer shows a 400 page.
- `SignIn`: the user must type their password (no live login session, `prompt=login`, or the
  session is older than `max_age`); the hosted page (actions/sign_in.py) finishes the request.
- `StepUp`: the live login session is too weak for the request (`acr_values=mfa`, or a client
  registered with `require_mfa`, and a session signed in with the password alone by a user who
  has a second factor): the page asks for the second factor only (actions/sign_in_steps.py),
  which upgrades the session.
- `Redirect`: back to the client, with a code or an error, `state` and `iss`; or, a
  `ToConsent`, to the consent page (actions/consent.py): the client is third-party
  (`consent: true`) and the user's remembered grant does not cover what it asks, or
  `prompt=consent`. That is decided in `complete`, the one place every sign-in path goes
  through before a code is issued.

`acr_values` is voluntary (OpenID Connect Core §3.1.2.1: "Requested Authentication Context
Class Reference values ... as a Voluntary Claim"): a user with no second factor asked for `mfa`
signs in with the password, and the token's `acr` says `pwd` (as Keycloak and Auth0 do); the
client decides. A client that must not get such a session registers with `require_mfa`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from authserver import page_limits
from authserver.accounts.consents import covers
from authserver.accounts.login_sessions import MAX_COOKIE, LoginSession, acr_of, hash_session_token
from authserver.audit import ANONYMOUS, AuditEvent
from authserver.clients import Client
from authserver.errors import InvalidClient, InvalidScope, InvalidTarget, OAuthError
from authserver.inputs import storable
from authserver.metadata_documents import documents
from authserver.metadata_documents.fetch import Fetched, FetchRefused
from authserver.services import Services
from authserver.tokens.authorization_codes import CODE_TTL, AuthorizationCode, issue_code
from authserver.tokens.pkce import check_challenge
from authserver.tokens.resources import registered, requested_resources
from authserver.tokens.scopes import grant, parse_scope

MAX_STATE = 1024
MAX_NONCE = 512
MAX_ACR_VALUES = 256
PROMPTS = ("none", "login", "consent")
JKT = re.compile(r"[A-Za-z0-9_-]{43}")


class ErrorPage(Exception):
    """An error that must not be sent to the redirect URI; `description` is shown."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class AuthorizationRequest:
    client: Client
    redirect_uri: str
    redirect_uri_given: bool
    state: str | None
    scope: tuple[str, ...] | None
    code_challenge: str
    nonce: str | None
    prompt: str | None
    max_age: int | None
    resources: tuple[str, ...] = ()  # RFC 8707: the resources named, checked well-formed
    acr_values: tuple[str, ...] = ()  # as the request named them, in its order
    dpop_jkt: str | None = None  # RFC 9449 §10: the DPoP key the code is bound to
    # The request's parameters as received: the consent page's URL carries them on, as the
    # sign-in page's does, and checks them again (nothing of it is trusted from a form).
    params: tuple[tuple[str, str], ...] = ()

    @property
    def wants_mfa(self) -> bool:
        """A second factor is asked for: by `acr_values` naming `mfa` and not `pwd` (a
        client listing both accepts either), or by the client's registration."""
        asked = "mfa" in self.acr_values and "pwd" not in self.acr_values
        return asked or self.client.require_mfa


@dataclass(frozen=True)
class Redirect:
    url: str
    error: str | None = None  # the error code sent with it, if any


@dataclass(frozen=True)
class ToConsent(Redirect):
    """To the consent page, with the authorization request in the query string."""


@dataclass(frozen=True)
class SignIn:
    request: AuthorizationRequest


@dataclass(frozen=True)
class StepUp:
    """The browser's login session is live but too weak: the second factor is all that is
    missing (the password is recent enough)."""

    request: AuthorizationRequest


class _Refused(Exception):
    """A redirectable error: `code` and `description` go to the client."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


Params = Sequence[tuple[str, str]]

# A bare sign-in that goes on to one of our own pages (`/login?then=account`, where /account
# sends a browser without a login session). The value names a page of this fixed list, never a
# URL: no value can make the sign-in page an open redirect.
THEN = "then"
THEN_PAGES = {"account": "/account", "account_email": "/account/email"}


def local_page_after(params: Params) -> str | None:
    """The path a bare sign-in goes to next: `params` is exactly one known `then`."""
    if len(params) == 1 and params[0][0] == THEN:
        return THEN_PAGES.get(params[0][1])
    return None


async def authorize(
    services: Services, params: Params, session_cookie: str | None, *, address: str | None
) -> Redirect | SignIn | StepUp:
    """The answer to one /authorize request; raises ErrorPage when nothing may be redirected.

    Audited: a code as `code.issued` (with the code), any other answer (the consent page's
    too) as `authorize` with its outcome."""
    client_id = _single(params).get("client_id")
    try:
        outcome = await _decide(services, params, session_cookie, address)
    except ErrorPage as exc:
        await _audit(services, client_id, "error_page", exc.description)
        raise
    if isinstance(outcome, SignIn):
        await _audit(services, client_id, "sign_in")
    elif isinstance(outcome, StepUp):
        await _audit(services, client_id, "step_up")
    elif isinstance(outcome, ToConsent):
        await _audit(services, client_id, "consent")
    elif outcome.error is not None:
        await _audit(services, client_id, "error", outcome.error)
    return outcome


async def _audit(
    services: Services, client_id: str | None, outcome: str, why: str | None = None
) -> None:
    detail = {"outcome": outcome} | ({"error": why} if why else {})
    # Only what the store can hold: the refused request may name anything (a NUL, say).
    target = client_id[:128] if client_id and storable(client_id) else "-"
    event = AuditEvent(services.clock(), ANONYMOUS, "authorize", target, detail)
    await services.audit.record([event])


async def _decide(
    services: Services, params: Params, session_cookie: str | None, address: str | None
) -> Redirect | SignIn | StepUp:
    client, redirect_uri, given = await trusted_target(services, params, address=address)
    state = _single(params).get("state")
    try:
        request = _parse(client, redirect_uri, given, params)
        await _targets(services, request)
    except _Refused as exc:
        return error_redirect(services, redirect_uri, exc.code, exc.description, state)
    session = await signed_in_enough(services, request, session_cookie)
    if not isinstance(session, LoginSession):
        return session
    return await complete(services, request, session)


async def signed_in_enough(
    services: Services, request: AuthorizationRequest, session_cookie: str | None
) -> LoginSession | Redirect | SignIn | StepUp:
    """The browser's live login session, if it is fresh and strong enough for the request;
    else what must happen first (a sign-in, a step-up, or the prompt=none error). /authorize
    and the consent page both ask here: a consent URL made by hand gets no code /authorize
    would have withheld."""
    session = await live_session(services, session_cookie)
    if session is not None and _too_old(services, request, session):
        session = None
    if request.prompt == "none":
        if session is None:
            # OpenID Connect Core §3.1.2.6: login_required, the end-user must authenticate.
            return error_redirect(
                services, request.redirect_uri, "login_required", "The user is not signed in.",
                request.state,
            )  # fmt: skip
        if await _too_weak(services, request, session):
            # OpenID Connect Core §3.1.2.6: interaction_required, the authorization server
            # requires end-user interaction of some form to proceed (the second factor).
            return error_redirect(
                services, request.redirect_uri, "interaction_required",
                "The request needs the user's second factor.", request.state,
            )  # fmt: skip
        return session
    if request.prompt == "login" or session is None:
        return SignIn(request)
    if await _too_weak(services, request, session):
        return StepUp(request)
    return session


async def _too_weak(
    services: Services, request: AuthorizationRequest, session: LoginSession
) -> bool:
    """A second factor is asked for, the session was signed in without one, and its user has
    one to give (else the request goes on: `complete` decides what a `pwd` session gets)."""
    if not request.wants_mfa or acr_of(session.amr) == "mfa":
        return False
    return bool(await services.second_factors.kinds(session.user_id))


async def live_session(services: Services, cookie: str | None) -> LoginSession | None:
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    settings = services.settings
    return await services.login_sessions.touch(
        hash_session_token(cookie), services.clock(), settings.login_session_idle_ttl
    )


async def trusted_target(
    services: Services, params: Params, *, address: str | None
) -> tuple[Client, str, bool]:
    """The client and the redirect URI to answer to: (client, uri, whether the request named
    it). RFC 6749 §4.1.2.1: if the request fails due to a missing, invalid, or mismatching
    redirection URI, or if the client identifier is missing or invalid, the authorization
    server SHOULD inform the resource owner of the error and MUST NOT automatically redirect
    the user-agent to the invalid redirection URI."""
    counts: dict[str, int] = {}
    for name, value in params:
        counts[name] = counts.get(name, 0) + 1
        if not (storable(name) and storable(value)):
            raise ErrorPage("The request contains a character not allowed.")
    values = _single(params)
    client_id = values.get("client_id")
    if not client_id or counts["client_id"] > 1 or len(client_id) > 128:
        raise ErrorPage("The request names no client, or more than one.")
    try:
        client = await named_client(services, client_id, address=address)
    except InvalidClient as exc:
        # A metadata document that cannot be had: no redirect URI of it can be trusted.
        raise ErrorPage(exc.description) from None
    if client is None or client.disabled:
        # A disabled client is answered as an unknown one: no sign-in page "to continue to" it,
        # no code to its redirect URI (single sign-on), no prompt=none answer.
        raise ErrorPage("The client is not registered.")
    if counts.get("redirect_uri", 0) > 1:
        raise ErrorPage("The request names more than one redirect URI.")
    uri = values.get("redirect_uri")
    if uri is None:
        if len(client.redirect_uris) != 1:
            raise ErrorPage("The request must name its redirect URI.")
        return client, client.redirect_uris[0], False
    # RFC 9700 §4.1.3 / §2.1: redirect URIs compared with exact string matching.
    if uri not in client.redirect_uris:
        raise ErrorPage("The redirect URI is not registered for this client.")
    return client, uri, True


async def named_client(services: Services, client_id: str, *, address: str | None) -> Client | None:
    """The client a request names: stored, or a client ID metadata document's (fetched when
    stale). Raises InvalidClient (metadata_documents.documents.DocumentRefused), also when the
    request's address group has made too many fetches (page_limits.DOCUMENT_FETCHES)."""

    async def fetch(url: str, allow_hosts: tuple[str, ...]) -> Fetched:
        # Counted only when a fetch is needed: clients whose documents are fresh cost nothing.
        wait = await page_limits.retry_after(
            services.page_limits, services.clock(), address,
            prefix=page_limits.DOCUMENT_FETCHES, per_address=page_limits.DOCUMENT_FETCHES_LIMIT,
        )  # fmt: skip
        if wait is not None:
            raise FetchRefused(
                "Too many client metadata documents were fetched for requests from your"
                f" network; try again in {wait} seconds."
            )
        return await services.fetch_document(url, allow_hosts)

    return await documents.named_client(
        services.clients, fetch, services.settings, client_id, services.clock()
    )


async def resume(
    services: Services, params: Params, *, address: str | None
) -> AuthorizationRequest | Redirect | None:
    """For the sign-in page, which carries the authorization request in its query string: the
    request, checked again as /authorize checks it (the page's URL is anyone's to edit); a
    Redirect with the error; None for a bare sign-in with no request (or one that goes on to
    a page of ours: `local_page_after`). Raises ErrorPage."""
    if not params or local_page_after(params) is not None:
        return None
    client, redirect_uri, given = await trusted_target(services, params, address=address)
    try:
        request = _parse(client, redirect_uri, given, params)
        await _targets(services, request)
        return request
    except _Refused as exc:
        state = _single(params).get("state")
        return error_redirect(services, redirect_uri, exc.code, exc.description, state)


def _parse(client: Client, redirect_uri: str, given: bool, params: Params) -> AuthorizationRequest:
    names = [name for name, _ in params]
    # RFC 8707 §2: "Multiple resource parameters MAY be used to indicate that the requested
    # access token is intended to be used at multiple resources."
    repeated = sorted({name for name in names if names.count(name) > 1} - {"resource"})
    if repeated:
        # RFC 6749 §3.1: request and response parameters MUST NOT be included more than once.
        raise _Refused("invalid_request", f"The parameter {repeated[0][:40]} is repeated.")
    values = dict(params)
    # OpenID Connect Core §6: request objects are not supported here; refusing them (rather than
    # ignoring them) keeps a client from believing parameters it put only in the object held.
    if "request" in values:
        raise _Refused("request_not_supported", "The request parameter is not supported.")
    if "request_uri" in values:
        raise _Refused("request_uri_not_supported", "The request_uri parameter is not supported.")
    if values.get("state") is not None and len(values["state"]) > MAX_STATE:
        raise _Refused("invalid_request", "state is too long.")
    response_type = values.get("response_type")
    if not response_type:
        raise _Refused("invalid_request", "response_type is required.")
    if response_type != "code":
        raise _Refused("unsupported_response_type", "Only response_type=code is supported.")
    if "authorization_code" not in client.grant_types:
        raise _Refused("unauthorized_client", "This client may not use the authorization code.")
    try:
        challenge = check_challenge(
            values.get("code_challenge"), values.get("code_challenge_method")
        )
    except OAuthError as exc:
        raise _Refused("invalid_request", exc.description) from None
    try:
        scope = parse_scope(values.get("scope"))
        if scope is not None and not set(scope) <= {*client.scopes}:
            raise InvalidScope()
    except InvalidScope as exc:
        raise _Refused("invalid_scope", exc.description) from None
    nonce = values.get("nonce")
    if nonce is not None and (not nonce or len(nonce) > MAX_NONCE):
        raise _Refused("invalid_request", f"nonce must be 1 to {MAX_NONCE} characters.")
    prompt = values.get("prompt")
    if prompt is not None and prompt not in PROMPTS:
        raise _Refused("invalid_request", "prompt must be none, login or consent.")
    try:
        resources = requested_resources([value for name, value in params if name == "resource"])
    except InvalidTarget as exc:
        raise _Refused("invalid_target", exc.description) from None
    acr_values = values.get("acr_values", "")
    if len(acr_values) > MAX_ACR_VALUES:
        raise _Refused("invalid_request", "acr_values is too long.")
    dpop_jkt = values.get("dpop_jkt")
    if dpop_jkt is not None and not JKT.fullmatch(dpop_jkt):
        # RFC 9449 §10: "the JWK Thumbprint [RFC7638] of the proof-of-possession public key
        # using the SHA-256 hash function": 43 base64url characters, nothing else.
        raise _Refused("invalid_request", "dpop_jkt must be a SHA-256 JWK thumbprint.")
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        redirect_uri_given=given,
        state=values.get("state"),
        scope=scope,
        code_challenge=challenge,
        nonce=nonce,
        prompt=prompt,
        max_age=_max_age(values.get("max_age")),
        resources=resources,
        acr_values=tuple(acr_values.split()),
        dpop_jkt=dpop_jkt,
        params=tuple(params),
    )


async def _targets(services: Services, request: AuthorizationRequest) -> None:
    """Every resource the request names is registered, and the client's (its `resources`,
    if it lists any); else invalid_target. The scope granted is not narrowed to theirs: each
    token is, to its resource's (tokens/resources.scope_for), so a client asking for the same
    scope again at a refresh is not refused."""
    try:
        await registered(services.resources, request.resources, allowed=request.client.resources)
    except InvalidTarget as exc:
        raise _Refused(
            "invalid_target", "The resource is not registered, or not for this client."
        ) from exc


def _max_age(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise _Refused("invalid_request", "max_age must be a whole number of seconds.")
    return int(raw)


def _too_old(services: Services, request: AuthorizationRequest, session: LoginSession) -> bool:
    # OpenID Connect Core §3.1.2.1: if the elapsed time is greater than max_age, the OP MUST
    # attempt to actively re-authenticate the end-user. Errata 2: max_age=0 is equivalent to
    # prompt=login, even within the second of the sign-in.
    if request.max_age is None:
        return False
    return request.max_age == 0 or services.clock() - session.auth_time > request.max_age


async def complete(
    services: Services,
    request: AuthorizationRequest,
    session: LoginSession,
    *,
    consented: bool = False,
) -> Redirect | SignIn:
    """Issues the code for a signed-in user and sends the browser back with it; or, to a
    client registered with `require_mfa`, access_denied for a session without a second factor
    (its user has none: one who has one was asked for it before this); or, a third-party
    client whose grant does not cover the request, to the consent page (`consented`: the user
    just allowed it there)."""
    user = await services.users.by_id(session.user_id)
    if user is None or user.disabled:
        return SignIn(request)
    client = request.client
    if client.require_mfa and acr_of(session.amr) != "mfa":
        return error_redirect(
            services, request.redirect_uri, "access_denied",
            "This application requires two-step verification; the user has no second factor"
            " enrolled (they can add one on their account page).", request.state,
        )  # fmt: skip
    scope = grant(request.scope, client.scopes, user.scopes)
    if client.consent and not consented:
        asking = await _consent_needed(services, request, user.id, scope)
        if asking is not None:
            return asking
    now = services.clock()
    code = AuthorizationCode(
        client_id=client.client_id,
        user_id=user.id,
        login_session_id=session.id,
        redirect_uri=request.redirect_uri,
        redirect_uri_given=request.redirect_uri_given,
        code_challenge=request.code_challenge,
        scope=scope,
        nonce=request.nonce,
        auth_time=session.auth_time,
        expires_at=now + CODE_TTL,
        resources=request.resources,
        dpop_jkt=request.dpop_jkt,
    )
    value = await issue_code(services.codes, code, now)
    if value is None:  # the session ended, or the user was disabled, a moment ago
        return SignIn(request)
    return Redirect(_to_client(services, request.redirect_uri, {"code": value}, request.state))


async def _consent_needed(
    services: Services, request: AuthorizationRequest, user_id: str, scope: str
) -> Redirect | None:
    """Where the browser goes when the user must be asked (None: the grant covers it)."""
    if request.prompt != "consent":
        held = await services.consents.held(user_id, request.client.client_id)
        if covers(held, scope.split(), request.resources):
            return None
    if request.prompt == "none":
        # OpenID Connect Core §3.1.2.6: consent_required, the Authorization Server requires
        # End-User consent.
        return error_redirect(
            services, request.redirect_uri, "consent_required",
            "The user has not allowed this application what it asks.", request.state,
        )  # fmt: skip
    return ToConsent(f"{services.settings.issuer}/consent?{urlencode(_answered(request))}")


def _answered(request: AuthorizationRequest) -> list[tuple[str, str]]:
    """The request for the consent page, which checks it again (`signed_in_enough`), without
    the asks for a sign-in *now* (prompt=login, max_age=0): one was just made to get here, and
    kept they would ask for it again at every Allow. A hand-made consent URL naming them is
    sent to sign in, as /authorize would send it."""
    now = {"prompt"} if request.prompt == "login" else set()
    now |= {"max_age"} if request.max_age == 0 else set()
    return [(name, value) for name, value in request.params if name not in now]


def error_redirect(
    services: Services, redirect_uri: str, code: str, description: str, state: str | None
) -> Redirect:
    """RFC 6749 §4.1.2.1: the error, its description and the state, on the redirect URI."""
    params = {"error": code, "error_description": description}
    return Redirect(_to_client(services, redirect_uri, params, state), code)


def _to_client(
    services: Services, redirect_uri: str, params: dict[str, str], state: str | None
) -> str:
    if state is not None:
        params["state"] = state
    # RFC 9207 §2: the iss parameter in every authorization response, errors included, so a
    # client talking to several servers knows which one answered (mix-up defence).
    params["iss"] = services.settings.issuer
    # RFC 6749 §3.1.2: the query component of a registered URI MUST be retained.
    separator = "&" if "?" in redirect_uri else "?"
    return redirect_uri + separator + urlencode(params)


def _single(params: Params) -> dict[str, str]:
    """The first value of each parameter (repeats are refused where they matter)."""
    values: dict[str, str] = {}
    for name, value in params:
        values.setdefault(name, value)
    return values
