"""Errors the server answers with, shaped by RFC 6749 §5.2 and RFC 6750 §3.1.

    OAuthError                      code, status, public description (+ private detail, logged only)
    ├── InvalidRequest              400 invalid_request
    │   ├── UnsupportedMediaType    415 invalid_request
    │   ├── PayloadTooLarge         413 invalid_request
    │   ├── RequestTimeout          408 invalid_request (the body did not arrive in time)
    │   └── ForbiddenOrigin         403 invalid_request (refresh cookie from a foreign origin)
    ├── InvalidClient               401 invalid_client
    ├── InvalidGrant                400 invalid_grant (one sentence for every cause)
    ├── UnauthorizedClient          400 unauthorized_client
    ├── UnsupportedGrantType        400 unsupported_grant_type
    ├── UnsupportedTokenType        400 unsupported_token_type (RFC 7009 §2.2.1)
    ├── InvalidScope                400 invalid_scope
    ├── InvalidTarget               400 invalid_target (RFC 8707 §2: the `resource` asked for)
    ├── InvalidDPoPProof            400 invalid_dpop_proof (RFC 9449 §5: the DPoP header)
    │   └── UseDPoPNonce            400 use_dpop_nonce (§8: with a DPoP-Nonce header)
    ├── InvalidRedirectUri          400 invalid_redirect_uri (RFC 7591 §3.2.2, /register)
    ├── InvalidClientMetadata       400 invalid_client_metadata (RFC 7591 §3.2.2, /register)
    ├── InvalidToken                401 invalid_token (bearer token on a protected endpoint)
    │   └── DPoPChallenge           401 invalid_token, challenged with DPoP (RFC 9449 §7.1)
    │       ├── InvalidDPoPProofAtResource  401 invalid_dpop_proof
    │       └── UseDPoPNonceAtResource      401 use_dpop_nonce (§9)
    ├── InsufficientScope           403 insufficient_scope
    ├── InsufficientUserAuthentication  401 insufficient_user_authentication (RFC 9470)
    ├── Conflict                    409 conflict
    ├── NotFound                    404 not_found
    ├── SlowDown                    429 slow_down (login throttling, with Retry-After)
    ├── TemporarilyUnavailable      503 temporarily_unavailable (/readyz too)
    └── keys.lifecycle.KeyNotReady  409 key_not_ready (rotation too early, with Retry-After)

`description` is what the client reads; `detail` is for the log and never leaves the server;
`retry_after`, when set, is sent as Retry-After (RFC 9110 §10.2.3). http/errors.py renders them
all, and is the only module that writes an error's JSON.
"""

from __future__ import annotations


class OAuthError(Exception):
    code = "server_error"
    status = 500
    description = "The server met an unexpected condition."
    retry_after: int | None = None  # seconds; http/errors.py sends it as Retry-After

    def __init__(self, description: str | None = None, *, detail: str | None = None) -> None:
        if description is not None:
            self.description = description
        self.detail = detail
        super().__init__(detail or self.description)


class InvalidRequest(OAuthError):
    code = "invalid_request"
    status = 400
    description = "The request is malformed."


class UnsupportedMediaType(InvalidRequest):
    status = 415
    description = "Send application/x-www-form-urlencoded or application/json."


class PayloadTooLarge(InvalidRequest):
    status = 413
    description = "The request body is too large."


class RequestTimeout(InvalidRequest):
    status = 408
    description = "The request body did not arrive in time."


class ForbiddenOrigin(InvalidRequest):
    status = 403
    description = "This origin may not use the refresh cookie."


class InvalidClient(OAuthError):
    code = "invalid_client"
    status = 401
    description = "Client authentication failed."


class InvalidGrant(OAuthError):
    code = "invalid_grant"
    status = 400
    # RFC 6749 §5.2 lets us say more, but one sentence for every cause tells an attacker
    # nothing about which usernames exist or which tokens were ever valid.
    description = "The credentials or refresh token are invalid, expired or revoked."


class UnauthorizedClient(OAuthError):
    code = "unauthorized_client"
    status = 400
    description = "This client is not allowed to use this grant type."


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    status = 400
    description = "The grant type is not supported."


class UnsupportedTokenType(OAuthError):
    code = "unsupported_token_type"
    status = 400
    description = "The token type is not supported."


class InvalidScope(OAuthError):
    code = "invalid_scope"
    status = 400
    description = "The requested scope is invalid or not allowed for this client."


class InvalidTarget(OAuthError):
    code = "invalid_target"
    status = 400
    # RFC 8707 §2: "The requested resource is invalid, missing, unknown, or malformed."
    description = "The requested resource is invalid, unknown or not granted."


class InvalidRedirectUri(OAuthError):
    code = "invalid_redirect_uri"
    status = 400
    # RFC 7591 §3.2.2: "The value of one or more redirection URIs is invalid."
    description = "The value of one or more redirection URIs is invalid."


class InvalidClientMetadata(OAuthError):
    code = "invalid_client_metadata"
    status = 400
    description = "The value of one of the client metadata fields is invalid."


class InvalidToken(OAuthError):
    code = "invalid_token"
    status = 401
    description = "The access token is missing, invalid, expired or revoked."


class DPoPChallenge(InvalidToken):
    """RFC 9449 §7.1: a protected resource's refusal of a DPoP-bound token, or of a token
    presented with the DPoP scheme, answered with a `WWW-Authenticate: DPoP` challenge."""


class InvalidDPoPProofAtResource(DPoPChallenge):
    code = "invalid_dpop_proof"
    description = "The DPoP proof is invalid."


class UseDPoPNonceAtResource(DPoPChallenge):
    """RFC 9449 §9: "the resource server responds with ... the DPoP authentication scheme and
    the error parameter value use_dpop_nonce" (the DPoP-Nonce header: http/dpop_nonce.py)."""

    code = "use_dpop_nonce"
    description = "The DPoP proof must carry the server's nonce."


class InsufficientScope(OAuthError):
    code = "insufficient_scope"
    status = 403
    description = "The access token does not carry the scope this request needs."


class InsufficientUserAuthentication(OAuthError):
    """RFC 9470 §3: the token's sign-in is too weak; `acr_values` says what to ask for."""

    code = "insufficient_user_authentication"
    status = 401
    description = "The user must sign in with a second factor."
    acr_values = "mfa"


class Conflict(OAuthError):
    code = "conflict"
    status = 409
    description = "The resource already exists."


class NotFound(OAuthError):
    code = "not_found"
    status = 404
    description = "Nothing is here."


class SlowDown(OAuthError):
    code = "slow_down"
    status = 429
    description = "Too many failed logins; try again later."

    def __init__(self, retry_after: int, *, detail: str | None = None) -> None:
        super().__init__(detail=detail)
        self.retry_after = max(1, retry_after)


class TemporarilyUnavailable(OAuthError):
    code = "temporarily_unavailable"
    status = 503
    description = "The server is temporarily unable to handle the request."


class InvalidDPoPProof(OAuthError):
    """RFC 9449 §5: "the authorization server ... MUST reject the request" with this code when
    the DPoP proof is invalid or missing where the client must send one."""

    code = "invalid_dpop_proof"
    status = 400
    description = "The DPoP proof is invalid."


class UseDPoPNonce(InvalidDPoPProof):
    """RFC 9449 §8: "the authorization server responds with an error response ... with the
    error code use_dpop_nonce" (the DPoP-Nonce header: http/dpop_nonce.py)."""

    code = "use_dpop_nonce"
    description = "The DPoP proof must carry the server's nonce."
