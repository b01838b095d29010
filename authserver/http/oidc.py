"""GET|POST /userinfo and GET|POST /end-session (OpenID Connect)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authserver import oidc
from authserver.authorize import ErrorPage
from authserver.errors import InvalidRequest
from authserver.http import pages
from authserver.http.context import services
from authserver.http.cookies import (
    clear_refresh_cookie,
    clear_session_cookie,
    read_session_cookie,
)
from authserver.http.forms import bearer_token, read_fields
from authserver.http.responses import NO_STORE, no_store_json


async def userinfo(request: Request) -> Response:
    return no_store_json(await oidc.userinfo(services(request), bearer_token(request)))


async def end_session(request: Request) -> Response:
    found = services(request)
    settings = found.settings
    params = await _params(request)
    cookie = read_session_cookie(request, settings)
    try:
        signed_out = await oidc.end_session(found, params, cookie)
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if signed_out.redirect_to is not None:
        response: Response = RedirectResponse(signed_out.redirect_to, 303, headers=NO_STORE)
    else:
        response = pages.render(request, settings, "signed_out.html", {})
    clear_session_cookie(response, settings)
    clear_refresh_cookie(response, settings)
    return response


async def _params(request: Request) -> dict[str, str]:
    """The query's parameters (GET) or the form's (POST), each at most once."""
    if request.method == "POST":
        return await read_fields(request)
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise InvalidRequest(f"The parameter {name[:40]} is repeated.")
        params[name] = value
    return params
