"""The hosted sign-in page GET|POST /login, which finishes /authorize's requests."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import authorize as authorizing
from authserver.actions import sign_in as signing_in
from authserver.actions.authorize import AuthorizationRequest, ErrorPage, Redirect, SignIn
from authserver.actions.sign_in import TryAgain
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
        outcome = await signing_in.finish(
            found,
            request.query_params.multi_items(),
            username=fields.get("username", ""),
            password=fields.get("password", ""),
            address=client_address(request, settings.trusted_proxies),
            replaces=read_session_cookie(request, settings),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, 303)
    if isinstance(outcome, TryAgain):
        return _try_again(request, found, outcome, fields[csrf.FIELD])
    # The token known before the sign-in is bound to no session or the one replaced: a new
    # one, bound to the new login session (http/csrf.py).
    token = csrf.new_token(request, outcome.cookie)
    if isinstance(outcome.then, Redirect):
        response = redirect(outcome.then.url, 303)
    elif isinstance(outcome.then, SignIn):  # the user was disabled a moment ago
        response = _form(request, found, outcome.then.request, token)
    else:
        response = pages.render(request, settings, "signed_in.html", {})
    expires_in = outcome.session.expires_at - found.clock()
    set_session_cookie(response, settings, outcome.cookie, expires_in)
    csrf.remember(response, settings, token)
    return response


def _try_again(request: Request, found: Services, again: TryAgain, csrf_token: str) -> Response:
    words = pages.words(request, found.settings)
    if again.retry_after is None:
        metrics.LOGINS_FAILED.inc()
        message, status, headers = words.gettext(WRONG_CREDENTIALS), 400, None
    else:
        seconds = again.retry_after
        message = words.ngettext(
            "Too many failed sign-ins. Try again in %(seconds)d second.",
            "Too many failed sign-ins. Try again in %(seconds)d seconds.",
            seconds,
        ) % {"seconds": seconds}
        status, headers = 429, {"Retry-After": str(seconds)}
    return _form(
        request, found, again.request, csrf_token, again.username, message, status, headers
    )


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
        "password_reset": found.settings.mail_enabled,  # the page is there with mail only
    }
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    return pages.render(
        request, found.settings, "login.html", context, status, form_targets=targets,
        headers=headers,
    )  # fmt: skip
