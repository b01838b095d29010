"""The sign-up page GET|POST /signup (actions/sign_up.py). With AUTHSERVER_SIGNUP=off it is not
there (404). Like /login it carries the authorization request in its query string, and has its
headers, CSRF token and languages."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import sign_up as signing_up
from authserver.actions.authorize import AuthorizationRequest, ErrorPage, Redirect
from authserver.actions.password_reset import SlowDown
from authserver.actions.sign_up import CheckMail, Form
from authserver.http import csrf, pages
from authserver.http.account import EXPIRED
from authserver.http.context import services
from authserver.http.forms import read_fields
from authserver.http.password_reset import slow_down
from authserver.http.responses import redirect
from authserver.http.sign_in import at_path, browser_facts, resumed, signed_in
from authserver.services import Services


def signup_on(request: Request) -> Services:
    found = services(request)
    if found.settings.signup == "off":
        raise HTTPException(404)  # API.md: off, /signup is 404
    return found


async def signup_form(request: Request) -> Response:
    found = signup_on(request)
    target = await resumed(request, found)
    if isinstance(target, Response):
        return target
    return _form(request, found, target, csrf.token_for(request, found.settings))


async def signup(request: Request) -> Response:
    found, fields = signup_on(request), await read_fields(request)
    settings = found.settings
    if not csrf.same_browser(request, settings, fields):
        return pages.error_page(request, settings, EXPIRED, 403)
    try:
        outcome = await signing_up.sign_up(
            found,
            request.query_params.multi_items(),
            username=fields.get("username", ""),
            email=fields.get("email", ""),
            password=fields.get("password", ""),
            locale=pages.language(request, settings),
            **browser_facts(request, settings),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, 303)
    if isinstance(outcome, SlowDown):
        return slow_down(request, found, outcome)
    if isinstance(outcome, Form):
        return _again(request, found, outcome, fields[csrf.FIELD])
    if isinstance(outcome, CheckMail):
        words = pages.words(request, settings)
        context = {
            "heading": words.gettext("Check your mail"),
            "message": words.gettext(
                "We sent a link to %(email)s. Open it to finish making your account; then sign in."
            )
            % {"email": outcome.email},
            "link": "/login",
            "link_text": words.gettext("Back to sign-in"),
        }
        return pages.render(request, settings, "notice.html", context)
    return signed_in(request, found, outcome)


def _again(request: Request, found: Services, again: Form, csrf_token: str) -> Response:
    # The sentence in the reader's language, then filled (a mapping: no placeholder is fine).
    error = pages.words(request, found.settings).gettext(again.problem) % again.values
    return _form(request, found, again.request, csrf_token, again.username, again.email, error, 400)


def _form(
    request: Request,
    found: Services,
    target: AuthorizationRequest | None,
    csrf_token: str,
    username: str = "",
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    settings = found.settings
    context = {
        "action": at_path("/signup", request),
        "sign_in": at_path("/login", request),
        "csrf_token": csrf_token,
        # Its registered name, else its id; escaped by the template, as every value.
        "client_name": target.client.display_name if target else None,
        "username": username,
        "email": email,
        "error": error,
        "min_length": settings.password_min_length,
    }
    # An `open` sign-up's answer redirects to the client: browsers check form-action on it.
    targets = (pages.origin_of(target.redirect_uri),) if target else ()
    response = pages.render(request, settings, "signup.html", context, status, form_targets=targets)
    csrf.remember(response, settings, csrf_token)
    return response
