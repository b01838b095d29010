"""POST /token and POST /refresh."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import token as issuing
from authserver.actions.grants import GrantRequest, TokenResponse
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import set_refresh_cookie
from authserver.http.cors import presented_refresh_token
from authserver.http.forms import client_credentials, dpop_header, endpoint, read_fields
from authserver.http.observe import observe_grant
from authserver.http.responses import no_store_json
from authserver.services import Services


async def token(request: Request) -> Response:
    found = services(request)
    fields = await read_fields(request)
    grant_type = fields.get("grant_type")
    if grant_type == "refresh_token":
        fields = await _with_cookie(request, found, fields)
    credentials = client_credentials(request, fields)
    address = client_address(request, found.settings.trusted_proxies)
    with observe_grant(grant_type):  # metrics: tokens issued, logins failed
        agent = request.headers.get("user-agent")
        origin = request.headers.get("origin")
        issued = await issuing.issue(
            found,
            GrantRequest(credentials, fields, address, agent, origin, *_dpop(request, "/token")),
        )
    return _render(found, issued)


async def refresh(request: Request) -> Response:
    found = services(request)
    fields = await _with_cookie(request, found, await read_fields(request))
    credentials = client_credentials(request, fields)
    # The refresh token grant, whatever the body says: this endpoint has no other.
    fields = {**fields, "grant_type": "refresh_token"}
    origin = request.headers.get("origin")
    with observe_grant("refresh_token"):
        proof, url = _dpop(request, "/refresh")
        issued = await issuing.issue(
            found, GrantRequest(credentials, fields, origin=origin, dpop=proof, dpop_url=url)
        )
    return _render(found, issued)


def _dpop(request: Request, path: str) -> tuple[str | None, str]:
    """The DPoP header and the URL its proof must name."""
    return dpop_header(request), endpoint(request, path)


async def _with_cookie(request: Request, found: Services, fields: dict[str, str]) -> dict[str, str]:
    """The refresh token from the cookie, or the body's (non-browser clients). A cookie from a
    foreign origin, or beside a body token, is refused here, before anything rotates."""
    presented = await presented_refresh_token(request, found, fields)
    return fields if presented is None else {**fields, "refresh_token": presented}


def _render(found: Services, issued: TokenResponse) -> Response:
    body: dict[str, object] = {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }
    if issued.id_token is not None:
        body["id_token"] = issued.id_token
    in_cookie = issued.refresh_delivery == "cookie" and issued.refresh_token is not None
    if issued.refresh_token is not None and not in_cookie:
        body["refresh_token"] = issued.refresh_token
    response = no_store_json(body)
    if in_cookie:
        assert issued.refresh_token is not None and issued.session_expires_at is not None
        # The cookie lives as long as the session: a token the browser keeps past that is
        # dead anyway, and one it drops earlier would log the user out early.
        max_age = issued.session_expires_at - found.clock()
        set_refresh_cookie(response, found.settings, issued.refresh_token, max_age)
    return response
