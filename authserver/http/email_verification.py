"""Email change and verification pages: GET|POST /account/email (signed in through the login
session; the form is account_email_form.html, which the account page can include) and
GET|POST /verify-email (the link's page, whose POST verifies). With mail off: 404."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import email_verification as verifying
from authserver.actions.email_verification import Activated, Form, SignInFirst, Taken
from authserver.actions.password_reset import Dead, SlowDown
from authserver.config import Settings
from authserver.http import csrf, pages
from authserver.http.account import EXPIRED
from authserver.http.addresses import client_address
from authserver.http.cookies import read_session_cookie
from authserver.http.forms import read_fields
from authserver.http.password_reset import mail_on, slow_down
from authserver.http.responses import redirect
from authserver.i18n.translations import N_
from authserver.services import Services

# Without a live login session: the sign-in, then back here (authorize.THEN_PAGES).
SIGN_IN = "/login?then=account_email"
DEAD_LINK = N_("This link does not work any more: it was used or it is too old. Ask for a new one.")
TAKEN = N_("Another account uses this address now. Nothing was changed.")


async def change_form(request: Request) -> Response:
    found = mail_on(request)
    shown = await verifying.form(found, cookie=read_session_cookie(request, found.settings))
    if isinstance(shown, SignInFirst):
        return redirect(SIGN_IN, 303)
    return _change_page(request, found, csrf.token_for(request, found.settings), shown)


async def change(request: Request) -> Response:
    found, fields = mail_on(request), await read_fields(request)
    settings = found.settings
    if not csrf.same_browser(request, settings, fields):
        return pages.error_page(request, settings, EXPIRED, 403)
    email = fields.get("email", "")
    outcome = await verifying.ask_change(
        found,
        cookie=read_session_cookie(request, settings),
        password=fields.get("password", ""),
        email=email,
        locale=pages.language(request, settings),
        address=client_address(request, settings.trusted_proxies),
    )
    if isinstance(outcome, SignInFirst):
        return redirect(SIGN_IN, 303)
    if isinstance(outcome, SlowDown):
        return slow_down(request, found, outcome)
    if isinstance(outcome, Form):
        return _change_page(request, found, fields[csrf.FIELD], outcome, email, 400)
    words = pages.words(request, settings)
    context = {
        "heading": words.gettext("Check your mail"),
        "message": words.gettext(
            "We sent a link to %(email)s. Your address changes once you open it."
        )
        % {"email": outcome.email},
        "link": None,
    }
    return pages.render(request, settings, "notice.html", context)


async def verify_form(request: Request) -> Response:
    """The link's GET: a page whose one button posts the token. It spends nothing."""
    found = mail_on(request)
    token = request.query_params.get("token", "")
    if len(token) > 200:
        return pages.error_page(request, found.settings, DEAD_LINK, 400)
    csrf_token = csrf.token_for(request, found.settings)
    context = {"csrf_token": csrf_token, "token": token}
    response = pages.render(request, found.settings, "verify_email.html", context)
    csrf.remember(response, found.settings, csrf_token)
    return response


async def verify(request: Request) -> Response:
    found, fields = mail_on(request), await read_fields(request)
    settings = found.settings
    if not csrf.same_browser(request, settings, fields):
        return pages.error_page(request, settings, EXPIRED, 403)
    outcome = await verifying.verify(
        found,
        token=fields.get("token", ""),
        address=client_address(request, settings.trusted_proxies),
    )
    if isinstance(outcome, SlowDown):
        return slow_down(request, found, outcome)
    if isinstance(outcome, Dead):
        return pages.error_page(request, settings, DEAD_LINK, 400)
    if isinstance(outcome, Taken):
        return pages.error_page(request, settings, TAKEN, 409)
    words = pages.words(request, settings)
    context: dict[str, str | None]
    if isinstance(outcome, Activated):  # a sign-up's link (AUTHSERVER_SIGNUP=verified)
        context = {
            "heading": words.gettext("Your account is ready"),
            "message": words.gettext("Your email address is confirmed. Sign in to continue."),
            "link": "/login",
            "link_text": words.gettext("Sign in"),
        }
        return pages.render(request, settings, "notice.html", context)
    context = {
        "heading": words.gettext("Your email address is confirmed"),
        "message": words.gettext("Your account uses %(email)s from now on.")
        % {"email": outcome.email},
        "link": None,
    }
    return pages.render(request, settings, "notice.html", context)


def _change_page(
    request: Request,
    found: Services,
    token: str,
    shown: Form,
    new_email: str = "",
    status: int = 200,
) -> Response:
    settings: Settings = found.settings
    error = pages.words(request, settings).gettext(shown.error) if shown.error else None
    context = {
        "csrf_token": token,
        "current_email": shown.current.email,
        "email_verified": shown.current.email_verified,
        "new_email": new_email,
        "email_error": error,
    }
    response = pages.render(request, settings, "account_email.html", context, status)
    csrf.remember(response, settings, token)
    return response
