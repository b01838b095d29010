"""The account page GET /account and its forms (actions/account.py): the user's sessions, a
password change, sign-out everywhere. Signed in by the login-session cookie; every form
CSRF-bound as /login's (http/csrf.py), every answer a page with its headers (http/pages.py) or
a 303 back to the page (post/redirect/get, so a reload posts nothing again)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import account as accounts
from authserver.actions import passkeys as passkeying
from authserver.actions.account import AccountPage, PasswordChanged, PasswordRefused
from authserver.actions.enrolment import Enrolled, TotpEnrolment
from authserver.errors import NotFound
from authserver.http import csrf, pages, user_agents
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import clear_session_cookie, read_session_cookie
from authserver.http.enrolment import setup_page
from authserver.http.forms import read_fields
from authserver.http.responses import redirect
from authserver.http.sign_in import too_many_failures
from authserver.i18n.translations import N_
from authserver.services import Services

PAGE = "/account"
# A browser without a live login session signs in, then comes back (authorize.THEN_PAGES).
SIGN_IN = "/login?then=account"

# What the page says after a form's 303 (`?done=`): a fixed list, nothing of the URL is shown.
DONE = {
    "password": N_("Your password was changed. Your other browsers and apps were signed out."),
    "ended": N_("The session was ended."),
    "factors_removed": N_("Two-step verification was turned off."),
    "passkey_removed": N_("The passkey was removed."),
    "passkey_added": N_("The passkey was added."),
    "app_revoked": N_("The app's access was revoked. It was signed out."),
}
EXPIRED = N_("This form has expired or came from another site. Reload the page.")


async def account(request: Request) -> Response:
    found = services(request)
    page = await accounts.open_account(found, read_session_cookie(request, found.settings))
    if page is None:
        return redirect(SIGN_IN, 303)
    done = DONE.get(request.query_params.get("done", ""))
    notice = pages.words(request, found.settings).gettext(done) if done else None
    return _render(request, found, page, notice=notice)


async def change_password(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    found, settings, fields = form.found, form.found.settings, form.fields
    outcome = await accounts.change_password(
        found,
        form.cookie,
        current=fields.get("current_password", ""),
        new=fields.get("new_password", ""),
        address=client_address(request, settings.trusted_proxies),
    )
    if outcome is None:
        return redirect(SIGN_IN, 303)
    if isinstance(outcome, PasswordChanged):
        return redirect(f"{PAGE}?done=password", 303)
    error, status, headers = _refusal(request, found, outcome)
    return _render(
        request, found, outcome.page, password_error=error, status=status, headers=headers
    )


async def start_totp(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    enrolment = await accounts.start_totp(form.found, form.cookie)
    if enrolment is None:
        return redirect(SIGN_IN, 303)
    return _setup_page(request, form.found, enrolment)


async def confirm_totp(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    fields = form.fields
    outcome = await accounts.confirm_totp(
        form.found, form.cookie, fields.get("enrolment", ""), fields.get("code", "")
    )
    if outcome is None:
        return redirect(SIGN_IN, 303)
    if isinstance(outcome, TotpEnrolment):
        return _setup_page(request, form.found, outcome, 400)
    return _recovery_codes_page(request, form.found, outcome)


async def remove_factors(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    found, settings = form.found, form.found.settings
    outcome = await accounts.remove_factors(
        found,
        form.cookie,
        current=form.fields.get("current_password", ""),
        address=client_address(request, settings.trusted_proxies),
    )
    if outcome is None:
        return redirect(SIGN_IN, 303)
    if isinstance(outcome, bool):
        return redirect(f"{PAGE}?done=factors_removed", 303)
    error, status, headers = _refusal(request, found, outcome)
    return _render(request, found, outcome.page, factor_error=error, status=status, headers=headers)


async def remove_passkey(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    settings = form.found.settings
    try:
        passkey_id = form.fields.get("id", "")
        removed = await passkeying.remove_passkey(form.found, form.cookie, passkey_id)
    except NotFound:
        return pages.error_page(request, settings, passkeying.NO_SUCH_PASSKEY, 404)
    if removed is None:
        return redirect(SIGN_IN, 303)
    if not removed:  # the last second factor: the password's form turns it off
        return pages.error_page(request, settings, passkeying.LAST_FACTOR, 409)
    return redirect(f"{PAGE}?done=passkey_removed", 303)


def _refusal(
    request: Request, found: Services, refused: PasswordRefused
) -> tuple[str, int, dict[str, str] | None]:
    """(the sentence, the status, the headers) of a form the page refused: why, or throttled."""
    words = pages.words(request, found.settings)
    if refused.retry_after is None:
        return words.gettext(refused.problem) % refused.values, 400, None
    message, headers = too_many_failures(words, refused.retry_after)
    return message, 429, headers


def _setup_page(
    request: Request, found: Services, enrolment: TotpEnrolment, status: int = 200
) -> Response:
    token = csrf.token_for(request, found.settings)
    context = {"action": "/account/totp/confirm", "required": False, "client_name": None}
    response = setup_page(request, found, enrolment, token, context, status)
    csrf.remember(response, found.settings, token)
    return response


def _recovery_codes_page(request: Request, found: Services, enrolled: Enrolled) -> Response:
    context = {"codes": enrolled.recovery_codes, "continue_to": None}
    return pages.render(request, found.settings, "account_recovery_codes.html", context)


async def end_session(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    settings, fields = form.found.settings, form.fields
    try:
        here = await accounts.end_session(
            form.found, form.cookie, fields.get("kind", ""), fields.get("id", "")
        )
    except NotFound:
        return pages.error_page(request, settings, accounts.NO_SUCH_SESSION, 404)
    if here is None:
        return redirect(SIGN_IN, 303)
    if here:  # this browser's own sign-in: it is signed out
        response = redirect(SIGN_IN, 303)
        clear_session_cookie(response, settings)
        return response
    return redirect(f"{PAGE}?done=ended", 303)


async def revoke_app(request: Request) -> Response:
    """POST /account/apps/revoke: forget what the user allowed a third-party app."""
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    try:
        revoked = await accounts.revoke_consent(
            form.found, form.cookie, form.fields.get("client_id", "")
        )
    except NotFound:
        return pages.error_page(request, form.found.settings, accounts.NO_SUCH_APP, 404)
    if revoked is None:
        return redirect(SIGN_IN, 303)
    return redirect(f"{PAGE}?done=app_revoked", 303)


async def sign_out_everywhere(request: Request) -> Response:
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    settings = form.found.settings
    ended = await accounts.sign_out_everywhere(form.found, form.cookie)
    if ended is None:
        return redirect(SIGN_IN, 303)
    response = pages.render(request, settings, "signed_out.html", {})
    clear_session_cookie(response, settings)
    return response


@dataclass(frozen=True)
class _Form:
    found: Services
    fields: dict[str, str]
    cookie: str | None  # the browser's login-session cookie


async def _posted(request: Request) -> _Form | Response:
    """A form of the page as posted, or the 403 page when its CSRF token is not this
    browser's (nothing is done then)."""
    found = services(request)
    fields = await read_fields(request)
    if not csrf.same_browser(request, found.settings, fields):
        return pages.error_page(request, found.settings, EXPIRED, 403)
    return _Form(found, fields, read_session_cookie(request, found.settings))


def _render(
    request: Request,
    found: Services,
    page: AccountPage,
    *,
    notice: str | None = None,
    password_error: str | None = None,
    factor_error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    settings = found.settings
    token = csrf.token_for(request, settings)
    context = {
        "page": page,
        "csrf_token": token,
        "notice": notice,
        "password_error": password_error,
        "factor_error": factor_error,
        "min_length": settings.password_min_length,
        "mail_enabled": settings.mail_enabled,  # the email change needs mail
        "when": _when,
        "agent_summary": user_agents.summary,
        "BROWSER": accounts.BROWSER,
        "APP": accounts.APP,
    }
    response = pages.render(request, settings, "account.html", context, status, headers=headers)
    csrf.remember(response, settings, token)
    return response


def _when(timestamp: int) -> str:
    """A moment as the page shows it: UTC, to the minute, the same in every language."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
