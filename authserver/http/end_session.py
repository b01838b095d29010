"""GET|POST /end-session (OpenID Connect RP-Initiated Logout 1.0)."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import end_session as signing_out
from authserver.actions.authorize import ErrorPage
from authserver.actions.end_session import ConfirmSignOut, PostAgain
from authserver.config import Settings
from authserver.errors import InvalidRequest
from authserver.http import csrf, pages
from authserver.http.context import services
from authserver.http.cookies import clear_refresh_cookie, clear_session_cookie, read_session_cookie
from authserver.http.forms import read_fields
from authserver.http.responses import redirect
from authserver.i18n.translations import N_

# The field of our PostAgain page's form that holds its CSRF token.
RESENT = "resent"


async def end_session(request: Request) -> Response:
    found = services(request)
    settings = found.settings
    params = await _params(request)
    # OpenID Connect RP-Initiated Logout 1.0 §2: ui_locales, "End-User's preferred languages
    # and scripts for the user interface", in the query or in the form.
    pages.posted_ui_locales(request, params.get("ui_locales"))
    posted = request.method == "POST"
    # The sign-out page's own form says so by its CSRF token; an app's form post has none.
    confirming = posted and csrf.FIELD in params
    # Our PostAgain page's form, by its token under RESENT: the post is same-site, and the
    # login-session cookie came along if the browser has one.
    resent = posted and RESENT in params
    if (confirming and not csrf.same_browser(request, settings, params)) or (
        resent and not csrf.same_browser(request, settings, params, field=RESENT, signed_in=False)
    ):
        description = N_(
            "This sign-out form has expired or came from another site. Reload the page."
        )
        return pages.error_page(request, settings, description, 403)
    params.pop(csrf.FIELD, None)
    params.pop(RESENT, None)
    cookie = read_session_cookie(request, settings)
    try:
        outcome = await signing_out.end_session(
            found,
            params,
            cookie,
            confirmed=confirming,
            maybe_cross_site=posted and not confirming and not resent,
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, ConfirmSignOut):
        return _confirmation(request, settings, outcome)
    if isinstance(outcome, PostAgain):
        return _post_again(request, settings, outcome)
    if outcome.redirect_to is not None:
        response = redirect(outcome.redirect_to, 303)
    else:
        response = pages.render(request, settings, "signed_out.html", {})
    if outcome.had_session:
        clear_session_cookie(response, settings)
        clear_refresh_cookie(response, settings)
    return response


def _post_again(request: Request, settings: Settings, again: PostAgain) -> Response:
    """A page that posts the request again from our origin, at once by a script the CSP names
    by its nonce, or by its button where scripts do not run. Its token, under RESENT, binds the
    second post to this browser (a Strict cookie: another site cannot send it)."""
    token = csrf.new_token(request, None)  # the request had no login-session cookie
    nonce = secrets.token_urlsafe(18)
    back = again.post_logout_redirect_uri
    context = {"fields": {**again.fields, RESENT: token}, "nonce": nonce}
    # The second post may be answered by a redirect to the app, which form-action must allow.
    targets = (pages.origin_of(back),) if back else ()
    response = pages.render(
        request, settings, "post_again.html", context, form_targets=targets, script_nonce=nonce
    )
    csrf.remember(response, settings, token)
    return response


def _confirmation(request: Request, settings: Settings, asked: ConfirmSignOut) -> Response:
    """The page that asks: a form posting the request back with the browser's CSRF token."""
    token = csrf.token_for(request, settings)
    back = asked.post_logout_redirect_uri
    context = {
        "csrf_token": token,
        "fields": asked.fields,
        "client_id": asked.client_id,
        "client_name": asked.client_name,  # escaped by the template, as every value
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
