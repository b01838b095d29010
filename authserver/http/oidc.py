"""GET|POST /userinfo and GET|POST /end-session (OpenID Connect)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authserver import oidc
from authserver.authorize import ErrorPage
from authserver.config import Settings
from authserver.errors import InvalidRequest
from authserver.http import csrf, pages
from authserver.http.context import services
from authserver.http.cookies import (
    clear_refresh_cookie,
    clear_session_cookie,
    read_session_cookie,
)
from authserver.http.forms import bearer_token, read_fields
from authserver.http.responses import NO_STORE, no_store_json
from authserver.oidc import ConfirmSignOut


async def userinfo(request: Request) -> Response:
    return no_store_json(await oidc.userinfo(services(request), bearer_token(request)))


async def end_session(request: Request) -> Response:
    found = services(request)
    settings = found.settings
    params = await _params(request)
    # The sign-out page's own form says so by its CSRF token; an app's form post has none.
    confirming = request.method == "POST" and csrf.FIELD in params
    if confirming and not csrf.same_browser(request, settings, params):
        description = "This sign-out form has expired or came from another site. Reload the page."
        return pages.error_page(request, settings, description, 403)
    params.pop(csrf.FIELD, None)
    cookie = read_session_cookie(request, settings)
    try:
        outcome = await oidc.end_session(found, params, cookie, confirmed=confirming)
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, ConfirmSignOut):
        return _confirmation(request, settings, outcome)
    if outcome.redirect_to is not None:
        response: Response = RedirectResponse(outcome.redirect_to, 303, headers=NO_STORE)
    else:
        response = pages.render(request, settings, "signed_out.html", {})
    clear_session_cookie(response, settings)
    clear_refresh_cookie(response, settings)
    return response


def _confirmation(request: Request, settings: Settings, asked: ConfirmSignOut) -> Response:
    """The page that asks: a form posting the request back with the browser's CSRF token."""
    token = csrf.token_for(request, settings)
    back = asked.post_logout_redirect_uri
    context = {
        "csrf_token": token,
        "fields": asked.fields,
        "client_id": asked.client_id,
        "stay_url": back,
    }
    # The confirmed answer redirects to the app's URI, which form-action must allow.
    targets = (pages.origin_of(back),) if back else ()
    response = pages.render(
        request, settings, "confirm_sign_out.html", context, form_targets=targets
    )
    csrf.remember(response, settings, token)
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
