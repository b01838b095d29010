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
from authserver.translations import N_

# The password grant's rule, one sentence whatever was wrong (an unknown user, a wrong
# password, a disabled account), in words for a person rather than the grant's, which also
# speak of refresh tokens.
WRONG_CREDENTIALS = N_("The username or password is wrong.")


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
        description = N_(
            "This sign-in form has expired or came from another site. Reload the page."
        )
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
    except InvalidGrant:
        metrics.LOGINS_FAILED.inc()
        message = pages.words(request, settings).gettext(WRONG_CREDENTIALS)
        return _form(request, found, target, token, username, message, 400)
    except SlowDown as exc:
        seconds = exc.retry_after or 1  # SlowDown makes it at least 1
        message = pages.words(request, settings).ngettext(
            "Too many failed sign-ins. Try again in %(seconds)d second.",
            "Too many failed sign-ins. Try again in %(seconds)d seconds.",
            seconds,
        ) % {"seconds": seconds}
        headers = {"Retry-After": str(seconds)}
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
        "client_id": target.client.client_id if target else None,
        "username": username,
        "error": error,
    }
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    return pages.render(
        request, found.settings, "login.html", context, status, form_targets=targets,
        headers=headers,
    )  # fmt: skip
