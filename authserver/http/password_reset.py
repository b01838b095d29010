"""The password reset pages: GET|POST /password-reset (ask for a link) and
GET|POST /password-reset/confirm (the link's page, whose POST sets the new password).
With mail off they are not there (404)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import password_reset as resetting
from authserver.actions.password_reset import BadInput, Dead, SlowDown
from authserver.config import Settings
from authserver.http import csrf, pages
from authserver.http.account import EXPIRED
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.forms import read_fields
from authserver.http.sign_in import too_many_requests
from authserver.i18n.translations import N_
from authserver.services import Services

DEAD_LINK = N_(
    "This link does not work any more: it was used, it is too old, or the password changed "
    "since it was sent. Ask for a new one."
)


def mail_on(request: Request) -> Services:
    found = services(request)
    if not found.settings.mail_enabled:
        raise HTTPException(404)  # the page needs mail (API.md): as if it were not there
    return found


async def ask_form(request: Request) -> Response:
    found = mail_on(request)
    return _ask_page(request, found, csrf.token_for(request, found.settings))


async def ask(request: Request) -> Response:
    found, fields = mail_on(request), await read_fields(request)
    settings = found.settings
    if not csrf.same_browser(request, settings, fields):
        return _expired(request, settings)
    email = fields.get("email", "")
    outcome = await resetting.ask(
        found,
        email=email,
        locale=pages.language(request, settings),
        address=client_address(request, settings.trusted_proxies),
    )
    token = fields[csrf.FIELD]
    if isinstance(outcome, BadInput):
        return _ask_page(request, found, token, email, _words(request, outcome.message), 400)
    if isinstance(outcome, SlowDown):
        return slow_down(request, found, outcome)
    # The same page, word for word, whether an account uses the address or not.
    words = pages.words(request, settings)
    context = {
        "heading": words.gettext("Check your mail"),
        "message": words.gettext(
            "If an account uses this address, a link to choose a new password is on its way. "
            "It works once, for a short while."
        ),
        "link": "/login",
        "link_text": words.gettext("Back to sign-in"),
    }
    return pages.render(request, settings, "notice.html", context)


async def confirm_form(request: Request) -> Response:
    """The link's GET: a page whose one button posts the token. It spends nothing."""
    found = mail_on(request)
    token = request.query_params.get("token", "")
    return _confirm_page(request, found, csrf.token_for(request, found.settings), token)


async def confirm(request: Request) -> Response:
    found, fields = mail_on(request), await read_fields(request)
    settings = found.settings
    if not csrf.same_browser(request, settings, fields):
        return _expired(request, settings)
    token, password = fields.get("token", ""), fields.get("password", "")
    address = client_address(request, settings.trusted_proxies)
    outcome = await resetting.confirm(found, token=token, password=password, address=address)
    if isinstance(outcome, Dead):
        return pages.error_page(request, settings, DEAD_LINK, 400)
    if isinstance(outcome, SlowDown):
        return slow_down(request, found, outcome)
    if isinstance(outcome, BadInput):
        message = _words(request, outcome.message)
        return _confirm_page(request, found, fields[csrf.FIELD], token, message, 400)
    words = pages.words(request, settings)
    context = {
        "heading": words.gettext("Your password is changed"),
        "message": words.gettext(
            "Sign in with your new password. Every device that was signed in is signed out."
        ),
        "link": "/login",
        "link_text": words.gettext("Sign in"),
    }
    return pages.render(request, settings, "notice.html", context)


def _ask_page(
    request: Request,
    found: Services,
    token: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    context = {"csrf_token": token, "email": email, "error": error}
    response = pages.render(request, found.settings, "password_reset.html", context, status)
    csrf.remember(response, found.settings, token)
    return response


def _confirm_page(
    request: Request,
    found: Services,
    csrf_token: str,
    token: str,
    error: str | None = None,
    status: int = 200,
) -> Response:
    if len(token) > 200:
        return pages.error_page(request, found.settings, DEAD_LINK, 400)
    context = {
        "csrf_token": csrf_token,
        "token": token,
        "error": error,
        "min_length": found.settings.password_min_length,  # the rule, said before it is broken
    }
    response = pages.render(request, found.settings, "password_reset_confirm.html", context, status)
    csrf.remember(response, found.settings, csrf_token)
    return response


def _expired(request: Request, settings: Settings) -> Response:
    return pages.error_page(request, settings, EXPIRED, 403)


def slow_down(request: Request, found: Services, slow: SlowDown) -> Response:
    message, headers = too_many_requests(pages.words(request, found.settings), slow.retry_after)
    return pages.error_page(request, found.settings, message, 429, headers=headers)


def _words(request: Request, sentence: str) -> str:
    return pages.words(request, services(request).settings).gettext(sentence)
