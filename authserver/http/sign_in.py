"""The hosted sign-in page GET|POST /login, which finishes /authorize's requests."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import authorize as authorizing
from authserver.actions.authorize import AuthorizationRequest, ErrorPage, Redirect
from authserver.actions.sign_in import sign_in
from authserver.errors import InvalidGrant, SlowDown
from authserver.http import csrf, pages
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import read_session_cookie, set_session_cookie
from authserver.http.forms import read_fields
from authserver.http.responses import redirect
from authserver.services import Services
from authserver.telemetry import metrics


async def login_form(request: Request) -> Response:
    found = services(request)
    try:
        target = await authorizing.resume(found, request.query_params.multi_items())
    except ErrorPage as exc:
        return pages.error_page(request, found.settings, exc.description, 400)
    if isinstance(target, Redirect):
        return redirect(target.url, 302)
    token = csrf.token_for(request, found.settings)
    response = _form(request, found, target, token)
    csrf.remember(response, found.settings, token)
    return response


async def login(request: Request) -> Response:
    found = services(request)
    settings = found.settings
    fields = await read_fields(request)
    if not csrf.same_browser(request, settings, fields):
        description = "This sign-in form has expired or came from another site. Reload the page."
        return pages.error_page(request, settings, description, 403)
    try:
        target = await authorizing.resume(found, request.query_params.multi_items())
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(target, Redirect):
        return redirect(target.url, 303)
    token = fields[csrf.FIELD]
    username = fields.get("username", "")
    try:
        session, cookie = await sign_in(
            found,
            username=username,
            password=fields.get("password", ""),
            address=client_address(request, settings.trusted_proxies),
            client_id=target.client.client_id if target else None,
            replaces=read_session_cookie(request, settings),
        )
    except InvalidGrant as exc:
        metrics.LOGINS_FAILED.inc()
        # The password grant's one sentence, whatever was wrong.
        return _form(request, found, target, token, username, exc.description, 400)
    except SlowDown as exc:
        message = f"Too many failed sign-ins. Try again in {exc.retry_after} seconds."
        headers = {"Retry-After": str(exc.retry_after)}
        return _form(request, found, target, token, username, message, 429, headers)
    # The token known before the sign-in is bound to no session or the one replaced: a new
    # one, bound to the new login session (http/csrf.py).
    token = csrf.new_token(request, cookie)
    if target is None:
        response = pages.render(request, settings, "signed_in.html", {})
    else:
        outcome = await authorizing.complete(found, target, session)
        if isinstance(outcome, Redirect):
            response = redirect(outcome.url, 303)
        else:
            response = _form(request, found, target, token)
    set_session_cookie(response, settings, cookie, session.expires_at - found.clock())
    csrf.remember(response, settings, token)
    return response


def _form(
    request: Request,
    found: Services,
    target: AuthorizationRequest | None,
    csrf_token: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    query = request.url.query
    context = {
        "action": "/login" + (f"?{query}" if query else ""),
        "csrf_token": csrf_token,
        # Its registered name, else its id; escaped by the template, as every value.
        "client_name": target.client.display_name if target else None,
        "username": username,
        "error": error,
    }
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    return pages.render(
        request, found.settings, "login.html", context, status, form_targets=targets,
        headers=headers,
    )  # fmt: skip
