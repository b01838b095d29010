"""POST /token and POST /refresh."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver import grants
from authserver.grants import TokenResponse
from authserver.http.forms import client_credentials, read_fields
from authserver.http.responses import no_store_json
from authserver.services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def token(request: Request) -> Response:
    fields = await read_fields(request)
    credentials = client_credentials(request, fields)
    issued = await grants.issue(services(request), fields.get("grant_type"), credentials, fields)
    return _render(issued)


async def refresh(request: Request) -> Response:
    fields = await read_fields(request)
    credentials = client_credentials(request, fields)
    issued = await grants.refresh_token_grant(services(request), credentials, fields)
    return _render(issued)


def _render(issued: TokenResponse) -> Response:
    body: dict[str, object] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
    return no_store_json(body)
