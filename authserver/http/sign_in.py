"""The hosted sign-in page GET|POST /login, which finishes /authorize's requests, and its second
step GET|POST /login/factor for users with a second factor (actions/sign_in_steps.py)."""

from __future__ import annotations

import gettext

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import authorize as authorizing
from authserver.actions import sign_in as signing_in
from authserver.actions import sign_in_steps as steps
from authserver.actions.authorize import AuthorizationRequest, ErrorPage, Redirect, SignIn
from authserver.actions.sign_in import TryAgain
from authserver.actions.sign_in_steps import (
    AwaitingFactor,
    Enrol,
    EnrolledSignedIn,
    FactorAgain,
    SignedIn,
    StartAgain,
)
from authserver.config import Settings
from authserver.http import csrf, pages
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import (
    clear_pending_cookie,
    read_pending_cookie,
    read_session_cookie,
    set_pending_cookie,
    set_session_cookie,
)
from authserver.http.enrolment import setup_page
from authserver.http.forms import read_fields
from authserver.http.responses import redirect
from authserver.i18n.translations import N_
from authserver.services import Services
from authserver.telemetry import metrics

# The password grant's rule, one sentence whatever was wrong (an unknown user, a wrong
# password, a disabled account), in words for a person rather than the grant's, which also
# speak of refresh tokens.
WRONG_CREDENTIALS = N_("The username or password is wrong.")
WRONG_CODE = N_("That code is wrong or was used already.")
FORM_EXPIRED = N_("This sign-in form has expired or came from another site. Reload the page.")


async def login_form(request: Request) -> Response:
    found = services(request)
    target = await resumed(request, found)
    if isinstance(target, Response):
        return target
    token = csrf.token_for(request, found.settings)
    response = _form(request, found, target, token)
    csrf.remember(response, found.settings, token)
    return response


async def resumed(request: Request, found: Services) -> AuthorizationRequest | None | Response:
    """The authorization request a page carries in its query string (/login's, /signup's),
    checked again as /authorize checks it; None for a page of its own; or the answer when it
    cannot go on: the 400 page, or back to the client with the error."""
    try:
        target = await authorizing.resume(
            found,
            request.query_params.multi_items(),
            address=client_address(request, found.settings.trusted_proxies),
        )
    except ErrorPage as exc:
        return pages.error_page(request, found.settings, exc.description, 400)
    if isinstance(target, Redirect):
        return redirect(target.url, 302)
    return target


async def login(request: Request) -> Response:
    found = services(request)
    settings = found.settings
    fields = await read_fields(request)
    if not csrf.same_browser(request, settings, fields):
        return pages.error_page(request, settings, FORM_EXPIRED, 403)
    try:
        outcome = await signing_in.finish(
            found,
            request.query_params.multi_items(),
            username=fields.get("username", ""),
            password=fields.get("password", ""),
            **browser_facts(request, settings),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, 303)
    if isinstance(outcome, TryAgain):
        return _try_again(request, found, outcome, fields[csrf.FIELD])
    if isinstance(outcome, AwaitingFactor):
        # The next step's form, its CSRF token bound to the pending sign-in's cookie.
        response = redirect(
            at_path("/login/enrol" if outcome.enrol else "/login/factor", request), 303
        )
        set_pending_cookie(response, settings, outcome.cookie, outcome.expires_at - found.clock())
        csrf.remember(response, settings, csrf.new_token(request, outcome.cookie))
        return response
    return signed_in(request, found, outcome)


def signed_in(request: Request, found: Services, outcome: SignedIn) -> Response:
    """The answer to a sign-in that started a login session (this page's, the second step's,
    or the sign-up's): the session cookie, a CSRF token bound to it, and where `then` says."""
    settings = found.settings
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


def browser_facts(request: Request, settings: Settings) -> dict[str, str | None]:
    """What a sign-in step learns of the browser: its address (the throttle's), the login
    session it holds (replaced by the new one) and its user agent (the account page's)."""
    return {
        "address": client_address(request, settings.trusted_proxies),
        "replaces": read_session_cookie(request, settings),
        "user_agent": request.headers.get("user-agent"),
    }


def _refusal(
    request: Request, found: Services, wrong: str, retry_after: int | None
) -> tuple[str, int, dict[str, str] | None]:
    """(the sentence, the status, the headers) of a refused step: `wrong`, or throttled."""
    words = pages.words(request, found.settings)
    if retry_after is None:
        metrics.LOGINS_FAILED.inc()
        return words.gettext(wrong), 400, None
    message, headers = too_many_failures(words, retry_after)
    return message, 429, headers


def _try_again(request: Request, found: Services, again: TryAgain, csrf_token: str) -> Response:
    message, status, headers = _refusal(request, found, WRONG_CREDENTIALS, again.retry_after)
    return _form(
        request, found, again.request, csrf_token, again.username, message, status, headers
    )


def too_many_requests(words: gettext.NullTranslations, seconds: int) -> tuple[str, dict[str, str]]:
    """A page limit's refusal (429, page_limits.py) as a page words it, and its Retry-After."""
    message = words.ngettext(
        "Too many requests. Try again in %(seconds)d second.",
        "Too many requests. Try again in %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}
    return message, {"Retry-After": str(seconds)}


def too_many_failures(words: gettext.NullTranslations, seconds: int) -> tuple[str, dict[str, str]]:
    """The throttle's refusal (429) as a page words it, and its Retry-After."""
    message = words.ngettext(
        "Too many failed sign-ins. Try again in %(seconds)d second.",
        "Too many failed sign-ins. Try again in %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}
    return message, {"Retry-After": str(seconds)}


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
    context = {
        "action": at_path("/login", request),
        "csrf_token": csrf_token,
        # Its registered name, else its id; escaped by the template, as every value.
        "client_name": target.client.display_name if target else None,
        "username": username,
        "error": error,
        "password_reset": found.settings.mail_enabled,  # the page is there with mail only
        # The sign-up page, when there is one, with the authorization request to go on with.
        "signup": None if found.settings.signup == "off" else at_path("/signup", request),
    }
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    return pages.render(
        request, found.settings, "login.html", context, status, form_targets=targets,
        headers=headers,
    )  # fmt: skip


async def factor_form(request: Request) -> Response:
    found, settings = services(request), services(request).settings
    pending = read_pending_cookie(request, settings)
    session = read_session_cookie(request, settings)
    params = request.query_params.multi_items()
    try:
        address = client_address(request, settings.trusted_proxies)
        target = await steps.pending_request(found, params, pending, session, address=address)
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(target, StartAgain):
        return redirect(at_path("/login", request), 303)
    if isinstance(target, Redirect):
        return redirect(target.url, 302)
    # Bound to the pending sign-in's cookie, or for a step-up to the login session's.
    token = csrf.new_token(request, pending or session)
    response = _factor_form(request, found, target.request, token, codes=target.codes)
    csrf.remember(response, settings, token)
    return response


async def factor(request: Request) -> Response:
    found, settings = services(request), services(request).settings
    fields = await read_fields(request)
    pending = read_pending_cookie(request, settings)
    # Without a pending sign-in, a step-up: the form's token is the login session's.
    if not csrf.same_browser(request, settings, fields, pending=pending):
        return pages.error_page(request, settings, FORM_EXPIRED, 403)
    try:
        outcome = await steps.second_factor(
            found,
            request.query_params.multi_items(),
            pending_cookie=pending,
            code=fields.get("code", ""),
            **browser_facts(request, settings),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, 303)
    if isinstance(outcome, StartAgain):
        response = redirect(at_path("/login", request), 303)
        clear_pending_cookie(response, settings)
        return response
    if isinstance(outcome, FactorAgain):
        return _factor_again(request, found, outcome, fields[csrf.FIELD])
    response = signed_in(request, found, outcome)
    clear_pending_cookie(response, settings)
    return response


def _factor_again(
    request: Request, found: Services, again: FactorAgain, csrf_token: str
) -> Response:
    message, status, headers = _refusal(request, found, WRONG_CODE, again.retry_after)
    return _factor_form(request, found, again.request, csrf_token, message, status, headers)


def _factor_form(
    request: Request,
    found: Services,
    target: AuthorizationRequest | None,
    csrf_token: str,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    codes: bool = True,
) -> Response:
    context = {
        "codes": codes,  # False: the user's only factor is a passkey
        "action": at_path("/login/factor", request),
        "csrf_token": csrf_token,
        # No pending sign-in: a step-up of the login session (the passkeys' script says so).
        "step_up": read_pending_cookie(request, found.settings) is None,
        "client_name": target.client.display_name if target else None,
        "error": error,
    }
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    return pages.render(
        request, found.settings, "login_factor.html", context, status, form_targets=targets,
        headers=headers,
    )  # fmt: skip


def at_path(path: str, request: Request) -> str:
    """`path` carrying the request's query string (the authorization request), as /login does."""
    query = request.url.query
    return path + (f"?{query}" if query else "")


async def enrol_form(request: Request) -> Response:
    """GET /login/enrol: AUTHSERVER_MFA=required, and the user has no factor yet."""
    found, settings = services(request), services(request).settings
    pending = read_pending_cookie(request, settings)
    try:
        outcome = await steps.enrolment(
            found,
            request.query_params.multi_items(),
            pending,
            address=client_address(request, settings.trusted_proxies),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    return _enrol_answer(request, found, outcome, csrf.new_token(request, pending))


async def enrol(request: Request) -> Response:
    found, settings = services(request), services(request).settings
    fields = await read_fields(request)
    pending = read_pending_cookie(request, settings)
    if pending is None or not csrf.same_browser(request, settings, fields, pending=pending):
        return pages.error_page(request, settings, FORM_EXPIRED, 403)
    try:
        outcome = await steps.enrol(
            found,
            request.query_params.multi_items(),
            pending_cookie=pending,
            token=fields.get("enrolment", ""),
            code=fields.get("code", ""),
            address=client_address(request, settings.trusted_proxies),
            replaces=read_session_cookie(request, settings),
            user_agent=request.headers.get("user-agent"),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, EnrolledSignedIn):
        signed_in = outcome.signed_in
        token = csrf.new_token(request, signed_in.cookie)
        context = {"codes": outcome.recovery_codes, "continue_to": outcome.continue_to}
        response = pages.render(request, settings, "account_recovery_codes.html", context)
        set_session_cookie(
            response, settings, signed_in.cookie, signed_in.session.expires_at - found.clock()
        )
        clear_pending_cookie(response, settings)
        csrf.remember(response, settings, token)
        return response
    return _enrol_answer(request, found, outcome, fields[csrf.FIELD], 400)


def _enrol_answer(
    request: Request,
    found: Services,
    outcome: Enrol | Redirect | StartAgain,
    csrf_token: str,
    status: int = 200,
) -> Response:
    settings = found.settings
    if isinstance(outcome, StartAgain):
        response = redirect(at_path("/login", request), 303)
        clear_pending_cookie(response, settings)
        return response
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, 303 if status != 200 else 302)
    target = outcome.request
    context = {
        "action": at_path("/login/enrol", request),
        "required": True,
        "client_name": target.client.display_name if target else None,
    }
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    response = setup_page(
        request, found, outcome.enrolment, csrf_token, context, status, form_targets=targets
    )
    csrf.remember(response, settings, csrf_token)
    return response
