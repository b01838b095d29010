"""Starlette glue for the verifier: bearer authentication, scope and role checks (RFC 6750).

The only module of the kit that imports Starlette: install `authserver-verify[starlette]`.

    app = Starlette(routes=[...], middleware=[Middleware(BearerAuthMiddleware, verifier=v)])

    @require_scope("orders:read")
    async def orders(request: Request) -> Response:
        claims = request.state.claims

    @require_role("billing:admin")       # the user's roles (RFC 9068 §2.2.3.1 `roles`)
    async def refunds(request: Request) -> Response: ...

    @require_scope("payments:write")
    @require_authentication(acr=("mfa",), max_age=300)   # RFC 9470 step-up
    async def pay(request: Request) -> Response: ...

DPoP (RFC 9449 §7): a token bound to a key (`cnf.jkt`) is accepted only as
`Authorization: DPoP <token>` with a valid proof of that key carrying `ath`, each proof once
(a bounded in-memory replay cache per process); presented as Bearer it is refused. Pass
`public_url` (the service's URL as clients call it) so proofs are compared with it rather than
with the Host header. With `dpop_nonces=Nonces([secret])` (authserver_verify.dpop; the secret
the same on every instance of the service) proofs must carry a nonce (§9): without a valid one
the answer is 401 `use_dpop_nonce`, and every answer to a request with a proof carries a fresh
`DPoP-Nonce`.

RFC 9728: with `resource=ProtectedResource(...)` the middleware serves the resource's metadata
at `/.well-known/oauth-protected-resource` (and its path-suffixed form), adds
`resource_metadata="<that URL>"` to every 401 challenge that passes through it (its own, the
decorators', RFC 9470's, DPoP's), and checks that the verifier's audience is the resource.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Container
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from authserver_verify import dpop
from authserver_verify.errors import IntrospectionUnavailable, InvalidToken, KeySetUnavailable
from authserver_verify.introspect import Introspector
from authserver_verify.resource import ProtectedResource
from authserver_verify.verifier import Verifier

__all__ = [
    "BearerAuthMiddleware",
    "authenticate",
    "require_active",
    "require_authentication",
    "require_role",
    "require_scope",
    "resource_metadata_endpoint",
    "with_resource_metadata",
]

logger = logging.getLogger("authserver.verify")

Endpoint = Callable[[Request], Awaitable[Response]]


class BearerAuthMiddleware:
    """Verifies the bearer token of every HTTP request and puts its claims on
    `request.state.claims`; answers 401 itself when the token is missing or invalid.

    Paths in `exempt` (e.g. health checks) pass through untouched, without claims.
    With `resource`, its RFC 9728 metadata is served (without a token, to any origin) and
    every 401 challenge names it; `verifier` defaults to `resource.verifier()`.
    `required_scopes`: every request's token must hold them all, else 403 insufficient_scope
    (as `require_scope`, for an app whose endpoints are not yours to decorate, such as an
    MCP SDK's transport).
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier | None = None,
        *,
        realm: str | None = None,
        exempt: Container[str] = (),
        public_url: str | None = None,
        resource: ProtectedResource | None = None,
        required_scopes: Collection[str] = (),
        dpop_nonces: dpop.Nonces | None = None,
    ) -> None:
        if verifier is None:
            if resource is None:
                raise TypeError("BearerAuthMiddleware needs a verifier or a resource")
            verifier = resource.verifier()
        if resource is not None and verifier.audience != resource.resource:
            # A token for another resource must be refused (RFC 9728 §7.4, RFC 8707): the
            # audience checked is the identifier the metadata announces, nothing else.
            raise ValueError("the verifier's audience must be the resource identifier")
        self.app = app
        self.verifier = verifier
        self.realm = realm
        self.exempt = exempt
        self.public_url = public_url
        self.resource = resource
        self.metadata = resource_metadata_endpoint(resource) if resource is not None else None
        self.metadata_paths = resource.well_known_paths() if resource is not None else ()
        self.replays = dpop.ReplayCache()
        self.required_scopes = tuple(required_scopes)
        self.nonces = dpop_nonces

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metadata is not None and scope["path"] in self.metadata_paths:
            await self.metadata(scope, receive, send)
            return
        if self.resource is not None:
            send = _naming_metadata(send, self.resource.metadata_url)
        if scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.nonces is not None and any(name == b"dpop" for name, _ in scope["headers"]):
            send = _with_nonce(send, self.nonces)
        request = Request(scope)
        outcome = await authenticate(
            request,
            self.verifier,
            realm=self.realm,
            public_url=self.public_url,
            replays=self.replays,
            dpop_required=self.resource is not None
            and self.resource.dpop_bound_access_tokens_required,
            dpop_nonces=self.nonces,
        )
        if not isinstance(outcome, Response) and self.required_scopes:
            outcome = _scope_refusal(self.required_scopes, outcome) or outcome
        if isinstance(outcome, Response):
            await outcome(scope, receive, send)
            return
        await self.app(scope, receive, send)


# The metadata is public and the same for every caller, so any origin may read it (browser
# MCP clients fetch it cross-origin), without credentials. The MCP SDKs send
# MCP-Protocol-Version with the request, which makes the browser ask first (a preflight).
_OPEN_TO_ALL = {"Access-Control-Allow-Origin": "*"}
_METADATA_PREFLIGHT = {
    **_OPEN_TO_ALL,
    "Access-Control-Allow-Methods": "GET, HEAD",
    "Access-Control-Allow-Headers": "MCP-Protocol-Version, If-None-Match",
    "Access-Control-Max-Age": "600",
}


def resource_metadata_endpoint(resource: ProtectedResource) -> ASGIApp:
    """An ASGI endpoint answering GET with the RFC 9728 document, to any origin (CORS `*`, a
    preflight answered), also usable as a Route's endpoint when the middleware is not
    installed."""
    body = resource.metadata()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            response: Response = Response(status_code=204, headers=_METADATA_PREFLIGHT)
        elif method not in ("GET", "HEAD"):
            response = JSONResponse(
                {"error": "invalid_request", "error_description": "Use GET."},
                status_code=405,
                headers={"Allow": "GET, HEAD, OPTIONS", **_OPEN_TO_ALL},
            )
        else:
            # RFC 9728 §3.2: a 200 with application/json; public, so caches may keep it.
            headers = {"Cache-Control": "public, max-age=3600", **_OPEN_TO_ALL}
            response = JSONResponse(body, headers=headers)
        await response(scope, receive, send)

    return endpoint


def with_resource_metadata(challenge: str, url: str) -> str:
    """RFC 9728 §5.1: the `resource_metadata` auth-param added to a WWW-Authenticate value
    (one challenge, as this kit sends), unless it is there already."""
    if "resource_metadata=" in challenge:
        return challenge
    scheme, _, params = challenge.partition(" ")
    param = f'resource_metadata="{url}"'
    return f"{scheme} {params}, {param}" if params.strip() else f"{scheme} {param}"


def _with_nonce(send: Send, nonces: dpop.Nonces) -> Send:
    """`send` with a fresh DPoP-Nonce on the answer (§9; unless it has one already)."""

    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"dpop-nonce" for name, _ in headers):
                headers.append((b"dpop-nonce", nonces.issue().encode("ascii")))
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _naming_metadata(send: Send, url: str) -> Send:
    """`send` with every 401's WWW-Authenticate naming the resource metadata URL."""

    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start" and message["status"] == 401:
            message = dict(message)
            message["headers"] = [
                (name, with_resource_metadata(value.decode("latin-1"), url).encode("latin-1"))
                if name.lower() == b"www-authenticate"
                else (name, value)
                for name, value in message.get("headers", [])
            ]
        await send(message)

    return sending


# For `authenticate` called without the middleware's cache: one per process.
_REPLAYS = dpop.ReplayCache()


async def authenticate(
    request: Request,
    verifier: Verifier,
    *,
    realm: str | None = None,
    public_url: str | None = None,
    replays: dpop.ReplayCache | None = None,
    resource: ProtectedResource | None = None,
    dpop_required: bool = False,
    dpop_nonces: dpop.Nonces | None = None,
) -> dict[str, Any] | Response:
    """The verified claims (also set on `request.state.claims`), or the error response to send.

    For use as a dependency in a single endpoint when the middleware is not installed; with
    `resource`, a 401's challenge names its metadata URL (RFC 9728 §5.1) and a resource that
    requires DPoP refuses unbound tokens. `verifier.audience` must be `resource.resource`.
    With `dpop_nonces`, a DPoP proof must carry one of its nonces (401 `use_dpop_nonce` with a
    DPoP-Nonce header otherwise).
    """
    if resource is not None:
        if verifier.audience != resource.resource:
            raise ValueError("the verifier's audience must be the resource identifier")
        outcome = await authenticate(
            request,
            verifier,
            realm=realm,
            public_url=public_url,
            replays=replays,
            dpop_required=resource.dpop_bound_access_tokens_required,
            dpop_nonces=dpop_nonces,
        )
        if isinstance(outcome, Response) and outcome.status_code == 401:
            outcome.headers["WWW-Authenticate"] = with_resource_metadata(
                outcome.headers["www-authenticate"], resource.metadata_url
            )
        return outcome
    scheme, token = _presented(request)
    if token is None:
        # RFC 6750 §3.1: if the request lacks any authentication information, the resource
        # server SHOULD NOT include an error code or other error information.
        return _challenge(401, None, "A bearer token is required.", realm)
    try:
        claims = await verifier.verify_async(token)
    except InvalidToken as exc:
        logger.info("bearer token refused: %s", type(exc).__name__)
        challenge = _dpop_challenge if scheme == "dpop" else _challenge
        return challenge(401, "invalid_token", str(exc), realm)
    except KeySetUnavailable:
        logger.warning("bearer token not checked: the issuer's key set is unavailable")
        return JSONResponse(
            {"error": "temporarily_unavailable", "error_description": "Try again later."},
            status_code=503,
            headers={"Retry-After": "5", "Cache-Control": "no-store"},
        )
    refusal = _check_binding(
        request, scheme, token, claims, realm, public_url, replays, dpop_required, dpop_nonces
    )
    if refusal is not None:
        return refusal
    request.state.claims = claims
    return claims


def _check_binding(
    request: Request,
    scheme: str,
    token: str,
    claims: dict[str, Any],
    realm: str | None,
    public_url: str | None,
    replays: dpop.ReplayCache | None,
    dpop_required: bool = False,
    nonces: dpop.Nonces | None = None,
) -> Response | None:
    """RFC 9449 §7: a bound token only with the DPoP scheme and a proof of its key."""
    cnf = claims.get("cnf")
    bound = cnf.get("jkt") if isinstance(cnf, dict) else None
    if scheme == "bearer":
        if bound is None and dpop_required:
            # RFC 9728 §2 dpop_bound_access_tokens_required: "the protected resource always
            # requires the use of DPoP-bound access tokens".
            logger.info("bearer token refused: this resource requires DPoP-bound tokens")
            return _dpop_challenge(401, "invalid_token", "This resource needs DPoP.", realm)
        if bound is None:
            return None
        # §7.2: a DPoP-bound token presented as a bearer token is refused.
        logger.info("bearer token refused: DPoP-bound token presented as Bearer")
        return _dpop_challenge(401, "invalid_token", "This token needs a DPoP proof.", realm)
    if bound is None:
        logger.info("token refused: unbound token presented with the DPoP scheme")
        return _dpop_challenge(401, "invalid_token", "This token is not DPoP-bound.", realm)
    base = (public_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")
    try:
        proof = dpop.check_proof(
            dpop.one_proof(request.headers.getlist("dpop")),
            method=request.method,
            url=base + request.url.path,
            access_token=token,
            nonce=None if nonces is None else nonces.accepts,
        )
    except dpop.InvalidDPoPProof as exc:
        logger.info("DPoP proof refused: %s", exc.detail)
        refusal = _dpop_challenge(401, exc.error, str(exc), realm)
        if isinstance(exc, dpop.UseDPoPNonce) and nonces is not None:
            # §9: the resource server "responds with ... a DPoP-Nonce HTTP header".
            refusal.headers["DPoP-Nonce"] = nonces.issue()
        return refusal
    if proof.jkt != bound:
        logger.info("DPoP proof refused: another key than the token's cnf.jkt")
        return _dpop_challenge(401, "invalid_dpop_proof", dpop.InvalidDPoPProof.message, realm)
    if not (replays or _REPLAYS).first_use(proof.replay_key, proof.expires_at):
        logger.info("DPoP proof refused: jti already used")
        return _dpop_challenge(401, "invalid_dpop_proof", dpop.InvalidDPoPProof.message, realm)
    return None


def require_scope(*needed: str) -> Callable[[Endpoint], Endpoint]:
    """Decorates an endpoint: 403 insufficient_scope unless the token holds every scope named."""
    return _checking(functools.partial(_scope_refusal, needed))


def _scope_refusal(needed: Collection[str], claims: dict[str, Any]) -> Response | None:
    scope = claims.get("scope")
    granted = set(scope.split()) if isinstance(scope, str) else set()
    if granted.issuperset(needed):
        return None
    # RFC 6750 §3.1: insufficient_scope → 403; the scope attribute MAY name the scope
    # necessary to access the resource.
    return _challenge(
        403,
        "insufficient_scope",
        "The access token lacks a scope this request needs.",
        None,
        scope=" ".join(needed),
    )


def require_role(*needed: str, any_of: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Decorates an endpoint: 403 unless the token's user holds every role named (with
    `any_of`: one of them), as `Verifier.has_roles` decides.

    RFC 6750 §3.1 defines no error for a missing role; the answer is the one for a missing
    privilege, `insufficient_scope` with 403, without the `scope` attribute (no scope the
    client could ask for would help: roles are the user's, given by an operator)."""

    def refuse(claims: dict[str, Any]) -> Response | None:
        if Verifier.has_roles(claims, *needed, any_of=any_of):
            return None
        return _challenge(
            403,
            "insufficient_scope",
            "The access token's user lacks a role this request needs.",
            None,
        )

    return _checking(refuse)


def require_authentication(
    *,
    acr: Collection[str] = (),
    max_age: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Callable[[Endpoint], Endpoint]:
    """Decorates an endpoint: 401 `insufficient_user_authentication` (RFC 9470 §3) unless the
    token's user signed in with one of the `acr` values (authserver's: `pwd`, `mfa`) and at
    most `max_age` seconds ago (its `auth_time`), as `Verifier.authentication_shortfall`
    decides. The challenge names what to ask the issuer for: `acr_values` (the route's, in
    its order) whenever the route names some, and `max_age` when the age was the reason, so
    the client's next authorization request gets a token that passes."""
    if max_age is not None and max_age < 0:
        raise ValueError("max_age must be a whole number of seconds, 0 or more")
    accepted = tuple(acr)

    def refuse(claims: dict[str, Any]) -> Response | None:
        lacking = Verifier.authentication_shortfall(
            claims, acr=accepted, max_age=max_age, now=clock()
        )
        if not lacking:
            return None
        # RFC 9470 §3: the resource server uses the error code insufficient_user_authentication
        # with acr_values and/or max_age "to indicate to the client" what to request.
        params = {"acr_values": " ".join(accepted)} if accepted else {}
        if "max_age" in lacking:
            params["max_age"] = str(max_age)
        return _challenge(
            401,
            "insufficient_user_authentication",
            "The user must sign in again, more strongly or more recently.",
            None,
            **params,
        )

    return _checking(refuse)


def _checking(
    refuse: Callable[[dict[str, Any]], Response | None],
) -> Callable[[Endpoint], Endpoint]:
    """A decorator over the verified claims (the middleware or `authenticate` must have run):
    401 without them, `refuse`'s answer when it has one, else the endpoint."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            claims = getattr(request.state, "claims", None)
            if not isinstance(claims, dict):
                return _challenge(401, None, "A bearer token is required.", None)
            refusal = refuse(claims)
            return refusal if refusal is not None else await endpoint(request)

        return checked

    return decorate


def require_active(introspector: Introspector) -> Callable[[Endpoint], Endpoint]:
    """Decorates an endpoint that needs instant revocation: after the offline checks (the
    middleware or `authenticate` must have run), asks the issuer's /introspect whether the
    token is still active (cached `introspector.cache_seconds`). 401 invalid_token when it
    is not, 503 when the issuer cannot be asked."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            _, token = _presented(request)
            if token is None or not isinstance(getattr(request.state, "claims", None), dict):
                return _challenge(401, None, "A bearer token is required.", None)
            try:
                await introspector.check_async(token)
            except InvalidToken as exc:
                logger.info("bearer token refused by introspection: %s", type(exc).__name__)
                return _challenge(401, "invalid_token", str(exc), None)
            except IntrospectionUnavailable:
                logger.warning("bearer token not checked: introspection is unavailable")
                return JSONResponse(
                    {"error": "temporarily_unavailable", "error_description": "Try again later."},
                    status_code=503,
                    headers={"Retry-After": "5", "Cache-Control": "no-store"},
                )
            return await endpoint(request)

        return checked

    return decorate


def _presented(request: Request) -> tuple[str, str | None]:
    """The scheme ("bearer" or "dpop") and the token of the Authorization header."""
    header = request.headers.get("authorization")
    if header is None:
        return "bearer", None
    scheme, _, token = header.partition(" ")
    token, scheme = token.strip(), scheme.lower()
    if scheme not in ("bearer", "dpop") or not token:
        return "bearer", None
    return scheme, token


def _dpop_challenge(status: int, error: str, description: str, realm: str | None) -> Response:
    """RFC 9449 §7.1: `WWW-Authenticate: DPoP` with the error and the algorithms accepted."""
    params = [f'realm="{realm}"'] if realm is not None else []
    params += [f'error="{error}"', f'algs="{" ".join(sorted(dpop.DEFAULT_ALGS))}"']
    body = {"error": error, "error_description": description}
    headers = {"WWW-Authenticate": "DPoP " + ", ".join(params), "Cache-Control": "no-store"}
    return JSONResponse(body, status_code=status, headers=headers)


def _challenge(
    status: int, error: str | None, description: str, realm: str | None, **extra: str
) -> Response:
    """`extra`: auth-params after the error (`scope`; RFC 9470's `acr_values`, `max_age`)."""
    params = []
    if realm is not None:
        params.append(f'realm="{realm}"')
    if error is not None:
        params.append(f'error="{error}"')
    params += [f'{name}="{value}"' for name, value in extra.items()]
    challenge = "Bearer" + (" " + ", ".join(params) if params else "")
    body = {"error": error or "invalid_token", "error_description": description}
    headers = {"WWW-Authenticate": challenge, "Cache-Control": "no-store"}
    return JSONResponse(body, status_code=status, headers=headers)
