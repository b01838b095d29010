"""Exception handlers: every error leaves as the JSON of API.md, never as a stack trace.

The pages a person sees (/authorize, /login, /end-session, /account, /console and their
forms) answer theirs as a page instead, with the same status and headers (Retry-After
included) and a sentence meant for a person: a browser shows a JSON body as raw text."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from authserver.config import Settings
from authserver.errors import (
    DPoPChallenge,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidClient,
    InvalidToken,
    OAuthError,
    PayloadTooLarge,
    RequestTimeout,
    TemporarilyUnavailable,
)
from authserver.http import pages
from authserver.http.responses import no_store_json
from authserver.i18n.translations import N_
from authserver_verify import dpop

logger = logging.getLogger("authserver")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

# The endpoints a browser shows to a person (API.md, "Browser sign-in").
PAGE_PATHS = frozenset(
    {
        "/authorize",
        "/login",
        "/login/factor",
        "/login/enrol",
        "/consent",
        "/account/apps/revoke",
        "/end-session",
        "/account",
        "/account/password",
        "/account/sessions/end",
        "/account/sign-out-everywhere",
        "/account/totp",
        "/account/totp/confirm",
        "/account/factors/remove",
        "/account/passkeys/remove",
    }
)
UNAVAILABLE = N_("The sign-in service is unavailable for a moment. Please try again in a minute.")
TOO_LARGE = N_("What this page sent was too large. Go back and try again.")
BROKEN = N_("Something went wrong on our side. Please try again in a minute.")


async def oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    if exc.detail:
        # A 5xx (the database down: temporarily_unavailable) is the server's trouble, logged
        # where alerts look; a 4xx is the client's, logged for the curious.
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        detail = exc.detail
        if isinstance(exc, TemporarilyUnavailable) and detail.startswith("database"):
            detail += _database_named(request)  # the driver's words say nothing of where
        logger.log(level, "%s %s: %s: %s", request.method, request.url.path, exc.code, detail)
    headers: dict[str, str] = {}
    if isinstance(exc, DPoPChallenge):
        # RFC 9449 §7.1: the challenge names the scheme and the algorithms we accept.
        algs = " ".join(sorted(dpop.DEFAULT_ALGS))
        headers["WWW-Authenticate"] = f'DPoP error="{exc.code}", algs="{algs}"'
    elif isinstance(exc, InvalidToken | InsufficientScope):
        # RFC 6750 §3: a protected resource answers with a Bearer challenge.
        headers["WWW-Authenticate"] = f'Bearer realm="authserver", error="{exc.code}"'
    elif isinstance(exc, InsufficientUserAuthentication):
        # RFC 9470 §3: the challenge names the authentication context to ask for.
        headers["WWW-Authenticate"] = (
            f'Bearer realm="authserver", error="{exc.code}", acr_values="{exc.acr_values}"'
        )
    elif isinstance(exc, InvalidClient) and _used_basic(request):
        # RFC 6749 §5.2: if the client authenticated via the Authorization header, the server
        # MUST answer 401 with a WWW-Authenticate matching the scheme it used.
        headers["WWW-Authenticate"] = 'Basic realm="authserver"'
    elif isinstance(exc, RequestTimeout):
        # RFC 9110 §15.5.9: "A server SHOULD send the "close" connection option [...] since 408
        # implies that the server has decided to close the connection rather than continue
        # waiting." (uvicorn closes it after a response that says so.)
        headers["Connection"] = "close"
    if exc.retry_after is not None:
        # RFC 9110 §10.2.3: how many seconds to wait before trying again (slow_down,
        # key_not_ready).
        headers["Retry-After"] = str(exc.retry_after)
    page = _as_page(request, _sentence(exc), exc.status, headers)
    if page is not None:
        return page
    return error_json(exc.code, exc.description, exc.status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request")
    description = (
        "Nothing is here." if exc.status_code == 404 else "The request is not allowed here."
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    return error_json(code, description, exc.status_code, headers)


def _allowed(request: Request) -> list[str]:
    """RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
    response containing a list of the target resource's currently supported methods." The
    router names only the methods of the first route whose path matched; a path served by
    several routes (GET and POST /login) has the union of theirs."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda name: (order.index(name) if name in order else 99, name))


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    page = _as_page(request, BROKEN, 500, {})
    if page is not None:
        return page
    return error_json("server_error", OAuthError.description, 500)


def error_body(code: str, description: str) -> dict[str, str]:
    """RFC 6749 §5.2: the error's JSON members; API.md fixes exactly these two."""
    return {"error": code, "error_description": description}


def error_json(
    code: str, description: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    """The one renderer of an error as JSON: RFC 6749 §5.1's no-store, whatever the status."""
    return no_store_json(error_body(code, description), status, headers)


def _sentence(exc: OAuthError) -> str:
    if isinstance(exc, TemporarilyUnavailable):
        return UNAVAILABLE
    if isinstance(exc, PayloadTooLarge):
        return TOO_LARGE
    return exc.description  # each a plain sentence already (slow_down: POST /login's own page)


def _as_page(
    request: Request, sentence: str, status: int, headers: dict[str, str]
) -> Response | None:
    """The error as a page, on the pages a person sees; None elsewhere (JSON, then)."""
    settings = _settings(request)
    path = request.url.path
    if settings is None or (path not in PAGE_PATHS and not path.startswith("/console")):
        return None
    return pages.error_page(request, settings, sentence, status, headers)


def _settings(request: Request) -> Settings | None:
    found = getattr(request.app.state, "services", None)
    return None if found is None else found.settings


def _database_named(request: Request) -> str:
    """Where the database is, as the setting says, without user or password."""
    settings = _settings(request)
    if settings is None:
        return ""
    parts = urlsplit(settings.database_url)
    if parts.scheme.startswith("sqlite"):
        return f" (AUTHSERVER_DATABASE_URL: the SQLite file {parts.path.removeprefix('/')})"
    return f" (AUTHSERVER_DATABASE_URL: {parts.hostname}:{parts.port or 5432})"


def _used_basic(request: Request) -> bool:
    return request.headers.get("authorization", "")[:6].lower() == "basic "


HANDLERS = {OAuthError: oauth_error, HTTPException: http_error, Exception: server_error}
