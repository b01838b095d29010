"""The passkeys' JSON endpoints the pages' script calls (actions/passkeys.py):

    POST /account/passkeys/options  creation options      POST /account/passkeys  → 201
    POST /login/passkey/options     request options       POST /login/passkey     → 200 {redirect}

Each is CSRF-bound as the forms are (http/csrf.same_browser_json): the page's token in
X-CSRF-Token, a same-origin Origin. A challenge is held for the browser by the SHA-256 of that
token, so another browser cannot answer it. /login/passkey* serve both uses: a browser whose
token is bound to its pending sign-in (the second-factor page) uses a passkey of that user, as
does a step-up (the same page for a browser signed in with the password alone, whose script
sends `"step_up": true`); any other, the sign-in page, signs in with a passkey alone.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authserver.accounts.passkeys import browser_hash
from authserver.actions import passkeys as passkeying
from authserver.actions.authorize import ErrorPage, Redirect, SignIn
from authserver.actions.passkeys import Refused
from authserver.actions.sign_in_steps import SignedIn, StartAgain
from authserver.config import Settings
from authserver.errors import InvalidRequest
from authserver.http import csrf, pages
from authserver.http.account import EXPIRED
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import (
    clear_pending_cookie,
    read_pending_cookie,
    read_session_cookie,
    set_session_cookie,
)
from authserver.http.errors import error_json
from authserver.http.forms import read_body
from authserver.http.responses import no_store_json
from authserver.http.sign_in import at_path, too_many_failures, too_many_requests
from authserver.services import Services
from authserver_verify.jose import reject_duplicate_members

SIGN_IN_AGAIN = "Sign in again."
_CODES = {400: "invalid_request", 409: "conflict", 429: "slow_down"}


async def registration_options(request: Request) -> Response:
    found = services(request)
    if not csrf.same_browser_json(request, found.settings):
        return _forbidden(request, found)
    cookie = read_session_cookie(request, found.settings)
    options = await passkeying.registration_options(found, cookie, _browser(request))
    return _not_signed_in() if options is None else no_store_json(options)


async def register(request: Request) -> Response:
    found = services(request)
    if not csrf.same_browser_json(request, found.settings):
        return _forbidden(request, found)
    answer = await _answer(request)
    name = answer.get("name")
    outcome = await passkeying.register(
        found,
        read_session_cookie(request, found.settings),
        _browser(request),
        answer,
        name if isinstance(name, str) else "",
    )
    if outcome is None:
        return _not_signed_in()
    if isinstance(outcome, Refused):
        return _refused(request, found, outcome)
    return no_store_json({"id": outcome.id, "name": outcome.name}, 201)


async def sign_in_options(request: Request) -> Response:
    found = services(request)
    allowed, pending = _pending_of(request, found.settings)
    if not allowed:
        return _forbidden(request, found)
    # The step-up page's script says so (a browser signed in with the password alone, asked
    # for a second factor): then only a passkey of the signed-in user will do.
    step_up = (await _answer(request, empty_ok=True)).get("step_up") is True
    session = (read_session_cookie(request, found.settings) or "") if step_up else None
    address = client_address(request, found.settings.trusted_proxies)
    options = await passkeying.sign_in_options(found, _browser(request), pending, session, address)
    if isinstance(options, Refused):
        return _refused(request, found, options)
    return no_store_json(options)


async def sign_in(request: Request) -> Response:
    found, settings = services(request), services(request).settings
    allowed, pending = _pending_of(request, settings)
    if not allowed:
        return _forbidden(request, found)
    answer = await _answer(request)
    try:
        outcome = await passkeying.sign_in(
            found,
            request.query_params.multi_items(),
            browser=_browser(request),
            pending_cookie=pending,
            answer=answer,
            address=client_address(request, settings.trusted_proxies),
            replaces=read_session_cookie(request, settings),
            user_agent=request.headers.get("user-agent"),
            step_up=answer.get("step_up") is True,
        )
    except ErrorPage as exc:
        words = pages.words(request, settings)
        return error_json("invalid_request", words.gettext(exc.description), 400)
    if isinstance(outcome, Refused):
        return _refused(request, found, outcome)
    if isinstance(outcome, Redirect):
        return no_store_json({"redirect": outcome.url})
    if isinstance(outcome, StartAgain):
        response = no_store_json({"redirect": at_path("/login", request)})
        clear_pending_cookie(response, settings)
        return response
    return _signed_in(request, found, outcome)


def _signed_in(request: Request, found: Services, outcome: SignedIn) -> Response:
    settings = found.settings
    if isinstance(outcome.then, Redirect):
        where = outcome.then.url
    elif isinstance(outcome.then, SignIn):  # the user was disabled a moment ago
        where = at_path("/login", request)
    else:  # a bare sign-in: the account page says who is signed in
        where = "/account"
    response = no_store_json({"redirect": where})
    expires_in = outcome.session.expires_at - found.clock()
    set_session_cookie(response, settings, outcome.cookie, expires_in)
    # As the form's sign-in: a new CSRF token, bound to the new login session.
    csrf.remember(response, settings, csrf.new_token(request, outcome.cookie))
    clear_pending_cookie(response, settings)
    return response


def _pending_of(request: Request, settings: Settings) -> tuple[bool, str | None]:
    """(whether the call is the page's, the pending sign-in's cookie): the cookie when the
    page's token is bound to it (the second-factor page); None when the token is the sign-in
    page's; not the page's (403) when it is neither."""
    pending = read_pending_cookie(request, settings)
    if pending is not None and csrf.same_browser_json(request, settings, pending=pending):
        return True, pending
    return csrf.same_browser_json(request, settings), None


async def _answer(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The browser's PublicKeyCredential.toJSON() (and our members beside it): a JSON
    object, within the body limit, no member twice. `empty_ok`: no body is {}."""
    body = await read_body(request)
    if empty_ok and not body.strip():
        return {}
    try:
        value = json.loads(body, object_pairs_hook=reject_duplicate_members)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The JSON body is malformed or repeats a member.") from None
    if not isinstance(value, dict):
        raise InvalidRequest("The JSON body must be an object.")
    return value


def _browser(request: Request) -> str:
    """Who a challenge is held for: the SHA-256 of the page's CSRF token (checked already)."""
    return browser_hash(request.headers.get(csrf.HEADER, ""))


def _refused(request: Request, found: Services, refused: Refused) -> Response:
    words = pages.words(request, found.settings)
    code = _CODES.get(refused.status, "invalid_request")
    if refused.retry_after is not None:  # throttled: the sign-in page's own sentences
        limited = too_many_requests if refused.message == passkeying.TOO_MANY else too_many_failures
        message, headers = limited(words, refused.retry_after)
        return error_json(code, message, refused.status, headers)
    return error_json(code, words.gettext(refused.message), refused.status)


def _forbidden(request: Request, found: Services) -> Response:
    words = pages.words(request, found.settings)
    return error_json("invalid_request", words.gettext(EXPIRED), 403)


def _not_signed_in() -> Response:
    return error_json("login_required", SIGN_IN_AGAIN, 401)
