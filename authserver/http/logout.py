"""POST /logout, /logout/all and /revoke (RFC 7009)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import logout as ending
from authserver.http.context import services
from authserver.http.cookies import clear_refresh_cookie, read_refresh_cookie
from authserver.http.cors import presented_refresh_token
from authserver.http.forms import client_credentials, dpop_token, read_fields, token_field
from authserver.http.responses import no_content, no_store_json


async def logout(request: Request) -> Response:
    found = services(request)
    fields = await read_fields(request)
    # A foreign origin, or a cookie beside a body token, revokes nothing.
    presented = await presented_refresh_token(request, found, fields)
    cookie = read_refresh_cookie(request, found.settings)
    await ending.logout(found, presented, *dpop_token(request))
    response = no_content()
    if cookie is not None:  # then the Origin was checked: no foreign page clears it
        clear_refresh_cookie(response, found.settings)
    return response


async def logout_all(request: Request) -> Response:
    await ending.logout_all(services(request), *dpop_token(request))
    return no_content()


async def revoke(request: Request) -> Response:
    fields = await read_fields(request)
    credentials = client_credentials(request, fields)
    await ending.revoke(
        services(request), credentials, token_field(fields), fields.get("token_type_hint")
    )
    # RFC 7009 §2.2: the server responds with HTTP status code 200 ... the content of the
    # response body is ignored by the client.
    return no_store_json({})
