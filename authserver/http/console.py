"""/console: the admin console's pages (actions/console). Signed in by the console's own
cookie (a backend-for-frontend: the tokens stay on the server); every page with the hosted
pages' headers (http/pages.py), every form CSRF-bound to the console session (http/csrf.py)
and answered with a 303 back to its page (post/redirect/get). Destructive actions are asked
again on a confirmation page."""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from authserver.accounts.password_policy import WeakPassword
from authserver.actions.admin.audit import MAX_EVENT_ID
from authserver.actions.console import NotAnOperator, SignInNeeded, StaleSignIn
from authserver.actions.console import audit as console_audit
from authserver.actions.console import clients as console_clients
from authserver.actions.console import keys as console_keys
from authserver.actions.console import registration_tokens as console_tokens
from authserver.actions.console import resources as console_resources
from authserver.actions.console import sessions as console_sessions
from authserver.actions.console import sign_in as console_sign_in
from authserver.actions.console import user as console_user
from authserver.actions.console import users as console_users
from authserver.audit import AuditQuery
from authserver.console_sessions import CONSOLE_CLIENT_ID
from authserver.errors import InvalidRequest, OAuthError
from authserver.http import csrf, pages
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import clear_console_cookie, read_console_cookie, set_console_cookie
from authserver.http.forms import read_fields
from authserver.http.responses import redirect
from authserver.i18n.translations import N_
from authserver.services import Services

SIGN_IN = "/console/sign-in"
NOT_AN_OPERATOR = N_(
    "This account may not use the console: it needs the admin role"
    " (and its second factor, if it has one)."
)
EXPIRED = N_("This form has expired or came from another site. Reload the page.")
DONE = {
    "disabled": N_("Disabled."),
    "enabled": N_("Enabled."),
    "deleted": N_("The client was deleted."),
    "rotated": N_("Rotated: the next key signs now, and a new next key is published."),
    "revoked": N_("The key was revoked: it has left the JWKS, and its tokens are refused."),
    "saved": N_("Saved."),
    "created": N_("Registered."),
    "resource_deleted": N_("The resource was deleted."),
    "ended": N_("The session was ended."),
    "ended_all": N_("Every session of the user was ended."),
    "reset": N_("Every second factor of the user was removed, and their sessions ended."),
    "user_created": N_("The user was created."),
    "password_set": N_("The password was set."),
    "link_sent": N_("A password-reset link is on its way to the user's email address."),
    "user_deleted": N_("The user was deleted."),
    "browser_ended": N_("The browser was signed out."),
    "token_revoked": N_("The registration token was revoked: it registers no more clients."),
}
# A user's page, and their sessions' (`{sub}`: the form's, quoted), where their forms go back.
USER_PAGE = "/console/users/edit?sub={sub}"
SESSIONS_PAGE = "/console/users/sessions?sub={sub}"

# What the operator typed is never sent back when it is one of these: a password.
UNECHOED = frozenset({"csrf_token", "password"})
# Where a form's re-shown page keeps the refusal (the request's scope).
FAILED = "authserver.console_form_failed"

Handler = Callable[[Request], Awaitable[Response]]
FormHandler = Callable[[Request, str | None, dict[str, str]], Awaitable[Response]]
# A console use case changing one thing, named by a form's field.
Change = Callable[[Services, str | None, str], Awaitable[None]]
# A console use case answering a page about one thing, named by a query parameter.
Shown = Callable[[Services, str | None, str], Awaitable[Any]]


def console_page(handler: Handler) -> Handler:
    """Without a live console session: to the sign-in; with one the admin API would refuse:
    the refusal page (and the session is not kept). Nothing else of the request is read."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except SignInNeeded:
            return redirect(SIGN_IN, 303)
        except StaleSignIn as stale:
            # A confirmation page: signed in again, the operator comes back to it.
            query = request.url.query
            return _sign_in_again(stale, request.url.path + (f"?{query}" if query else ""))
        except NotAnOperator:
            settings = services(request).settings
            response = pages.error_page(request, settings, NOT_AN_OPERATOR, 403)
            clear_console_cookie(response, settings)
            return response

    return guarded


@dataclass(frozen=True)
class Failed:
    """A console form the use case refused: the form's action (a GET form's: "GET " + its
    path), the sentence said, what was typed (never a password). `inline`: the page shows
    it in the form; else (a form of a table's row) above the page."""

    action: str
    sentence: str
    values: dict[str, str]
    inline: bool = True

    def typed(self, action: str, name: str, default: Any = "") -> Any:
        return self.values.get(name, default) if action == self.action else default

    def ticked(self, action: str, name: str, default: bool) -> bool:
        # An unticked box is not sent at all.
        return self.values.get(name) == "on" if action == self.action else default


def console_form(
    page: Handler, *keys: str, inline: bool = True
) -> Callable[[FormHandler], Handler]:
    """A console form's handler, given the console cookie and the form's fields once its CSRF
    token is the console session's (else the 403 page, and nothing done). A refusal (a 4xx
    OAuthError) re-shows `page` (the GET handler the form is on; `keys`: the fields naming
    its thing, as its query) with the sentence and what was typed."""

    def wrap(handler: FormHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            form = await _posted(request)
            if isinstance(form, Response):
                return form
            try:
                return await handler(request, *form)
            except OAuthError as refused:
                return await _again(request, refused, page, keys, form[1], inline=inline)

        return console_page(checked)

    return wrap


def searched(handler: Handler) -> Handler:
    """A page with a search (GET) form: a refused search shows the page unfiltered, the
    sentence and the search as typed in the form."""

    @functools.wraps(handler)
    async def searching(request: Request) -> Response:
        try:
            return await handler(request)
        except OAuthError as refused:
            if not request.url.query:
                raise
            fields = dict(request.query_params)
            return await _again(request, refused, handler, (), fields, f"GET {request.url.path}")

    return searching


async def _again(
    request: Request,
    refused: OAuthError,
    page: Handler,
    keys: tuple[str, ...],
    fields: dict[str, str],
    action: str | None = None,
    inline: bool = True,
) -> Response:
    """`page` again (a GET, its query the `keys` of `fields`), with the refusal's sentence
    and the form's values, the refusal's status. A server's trouble (5xx) is not the form's."""
    if refused.status >= 500:
        raise refused
    words = pages.words(request, services(request).settings)
    kept = {name: value for name, value in fields.items() if name not in UNECHOED}
    if isinstance(refused, WeakPassword):  # the policy's sentence, in the page's language
        sentence = words.gettext(refused.sentence) % refused.values
    else:
        sentence = words.gettext(refused.description)
    failed = Failed(action or request.url.path, sentence, kept, inline)
    query = urlencode({key: fields.get(key, "") for key in keys}).encode()
    scope = {**request.scope, "method": "GET", "query_string": query, FAILED: failed}
    response = await page(Request(scope, request.receive))
    response.status_code = refused.status
    return response


def confirmed(
    field: str, asked: Shown, template: str, change: Change, then: str
) -> tuple[Handler, Handler]:
    """A destructive action's two handlers: its confirmation page (GET: `asked`'s page about
    the thing the query's `field` names) and its form (POST: `change`, then back to `then`).
    A recent sign-in, where the use cases ask for one, is asked on both."""

    @console_page
    async def confirmation(request: Request) -> Response:
        return await _shown(request, field, asked, template)

    @console_page
    async def action(request: Request) -> Response:
        return await _act(request, field, change, then, confirmation, (field,))

    return confirmation, action


def stepped_up(then: str) -> Callable[[FormHandler], FormHandler]:
    """A form whose change may need a recent sign-in (StaleSignIn): the operator signs in
    again and comes back to the page `then` (its `{sub}`: the form's) to send it again;
    nothing is done meanwhile, and nothing typed (a password) travels through the sign-in."""

    def wrap(handler: FormHandler) -> FormHandler:
        @functools.wraps(handler)
        async def asked(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
            try:
                return await handler(request, cookie, fields)
            except StaleSignIn as stale:
                return _sign_in_again(stale, _then(then, fields))

        return asked

    return wrap


async def home(request: Request) -> Response:
    return redirect("/console/clients", 303)


async def sign_in(request: Request) -> Response:
    found = services(request)
    params = request.query_params
    started = await console_sign_in.start(
        found,
        mfa=params.get("mfa") == "1",
        recent=params.get("recent") == "1",
        then=params.get("then"),
        replacing=read_console_cookie(request, found.settings),
    )
    response = redirect(started.authorize_url, 303)
    set_console_cookie(response, found.settings, started.cookie)
    return response


@console_page
async def callback(request: Request) -> Response:
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    answer = {name: value for name, value in request.query_params.items()}
    outcome = await console_sign_in.finish(found, cookie, answer)
    if isinstance(outcome, console_sign_in.StepUp):
        asked = {"mfa": "1", "then": outcome.then, **({"recent": "1"} if outcome.recent else {})}
        return redirect(f"{SIGN_IN}?{urlencode(asked)}", 303)
    response = redirect(outcome.then, 303)
    set_console_cookie(response, found.settings, outcome.cookie)
    return response


async def sign_out(request: Request) -> Response:
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    fields = await read_fields(request)
    if not csrf.console_same_browser(request, found.settings, fields, cookie):
        return pages.error_page(request, found.settings, EXPIRED, 403)
    await console_sign_in.sign_out(found, cookie)
    response = pages.render(request, found.settings, "signed_out.html", {})
    clear_console_cookie(response, found.settings)
    return response


@console_page
@searched
async def clients(request: Request) -> Response:
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    search, after = _search(request)
    page = await console_clients.clients_page(found, cookie, search, after)
    context = {"page": page, "operator": page.operator, "console_client": CONSOLE_CLIENT_ID}
    return _render(request, "console_clients.html", context)


@console_page
async def new_client(request: Request) -> Response:
    found = services(request)
    who = await console_clients.whoami(found, read_console_cookie(request, found.settings))
    return _render(request, "console_client_new.html", {"operator": who})


@console_form(new_client)
async def create_client(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    created = await console_clients.create_client(services(request), cookie, fields)
    context = {"operator": created.operator, "created": created.created}
    return _render(request, "console_client_created.html", context, 201)


@console_page
async def edit_client_form(request: Request) -> Response:
    shown = console_clients.client_page
    return await _shown(request, "client_id", shown, "console_client_edit.html")


@console_form(edit_client_form, "client_id")
async def edit_client(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    client_id = await console_clients.edit_client(services(request), cookie, fields)
    return redirect(f"/console/clients?{urlencode({'q': client_id, 'done': 'saved'})}", 303)


@console_form(edit_client_form, "client_id")
async def rotate_client_secret(
    request: Request, cookie: str | None, fields: dict[str, str]
) -> Response:
    rotated = await console_clients.rotate_secret(services(request), cookie, fields)
    context = {"operator": rotated.operator, "rotated": rotated.rotated}
    return _render(request, "console_client_secret.html", context)


@console_page
async def disable_client(request: Request) -> Response:
    return await _switch(request, "clients", True)


@console_page
async def enable_client(request: Request) -> Response:
    return await _switch(request, "clients", False)


@console_page
async def confirm_delete_client(request: Request) -> Response:
    found = services(request)
    who = await console_clients.confirm_delete(found, read_console_cookie(request, found.settings))
    context = {"operator": who, "client_id": request.query_params.get("client_id", "")}
    return _render(request, "console_client_delete.html", context)


@console_page
async def delete_client(request: Request) -> Response:
    change = console_clients.delete_client
    then = "/console/clients?done=deleted"
    return await _act(request, "client_id", change, then, confirm_delete_client, ("client_id",))


@console_page
@searched
async def users(request: Request) -> Response:
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    search, after = _search(request)
    page = await console_users.users_page(found, cookie, search, after)
    return _render(request, "console_users.html", {"page": page, "operator": page.operator})


@console_page
async def new_user(request: Request) -> Response:
    found = services(request)
    who = await console_clients.whoami(found, read_console_cookie(request, found.settings))
    return _render(request, "console_user_new.html", {"operator": who, "user": console_user.BLANK})


@console_form(new_user)
@stepped_up("/console/users/new")
async def create_user(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    sub = await console_user.create_user(services(request), cookie, fields)
    return _done(USER_PAGE, sub, "user_created")


@console_page
async def edit_user_form(request: Request) -> Response:
    return await _shown(request, "sub", console_user.user_page, "console_user_edit.html")


@console_form(edit_user_form, "sub")
@stepped_up(USER_PAGE)
async def edit_user(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    sub = await console_user.edit_user(services(request), cookie, fields)
    return _done(USER_PAGE, sub, "saved")


@console_form(edit_user_form, "sub")
@stepped_up(USER_PAGE)
async def set_password(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    sub = await console_user.set_password(services(request), cookie, fields)
    return _done(USER_PAGE, sub, "password_set")


# A button alone, and not on the page when it cannot work: the refusal above the page.
@console_form(edit_user_form, "sub", inline=False)
async def send_reset_link(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    found = services(request)
    address = client_address(request, found.settings.trusted_proxies)
    await console_user.send_reset_link(found, cookie, fields.get("sub", ""), address)
    return _done(USER_PAGE, fields.get("sub", ""), "link_sent")


confirm_delete_user, delete_user = confirmed(
    "sub",
    console_user.user_to_delete,
    "console_user_delete.html",
    console_user.delete_user,
    "/console/users?done=user_deleted",
)


@console_page
async def disable_user(request: Request) -> Response:
    return await _switch(request, "users", True)


@console_page
async def enable_user(request: Request) -> Response:
    return await _switch(request, "users", False)


@console_page
async def user_sessions(request: Request) -> Response:
    shown = console_sessions.sessions_page
    return await _shown(request, "sub", shown, "console_sessions.html")


@console_page
async def end_session(request: Request) -> Response:
    then = "/console/users/sessions?sub={sub}&done=ended"
    change = console_sessions.end_session
    return await _act(request, "sid", change, then, user_sessions, ("sub",), inline=False)


@console_form(user_sessions, "sub", inline=False)
async def end_browser(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    sub = fields.get("sub", "")
    await console_sessions.end_browser(services(request), cookie, sub, fields.get("id", ""))
    return _done(SESSIONS_PAGE, sub, "browser_ended")


@console_page
async def end_all_sessions(request: Request) -> Response:
    then = "/console/users/sessions?sub={sub}&done=ended_all"
    change = console_sessions.end_all
    return await _act(request, "sub", change, then, user_sessions, ("sub",), inline=False)


confirm_reset_factors, reset_factors = confirmed(
    "sub",
    console_sessions.confirm_reset,
    "console_factors_reset.html",
    console_sessions.reset_factors,
    f"{SESSIONS_PAGE}&done=reset",
)


# The Disable/Enable forms of each page: the field naming what they switch, and the use case.
_SWITCHES = {
    "clients": ("client_id", console_clients.set_client_disabled),
    "users": ("sub", console_users.set_user_disabled),
}


async def _switch(request: Request, page: str, disabled: bool) -> Response:
    field, change = _SWITCHES[page]
    then = f"/console/{page}?done={'disabled' if disabled else 'enabled'}"
    return await _act(
        request,
        field,
        lambda at, cookie, value: change(at, cookie, value, disabled),
        then,
        clients if page == "clients" else users,
        inline=False,
    )


async def _act(
    request: Request,
    field: str,
    change: Change,
    then: str,
    page: Handler,
    keys: tuple[str, ...] = (),
    inline: bool = True,
) -> Response:
    """A form naming one thing (its `field`): CSRF checked, `change` made, back to `then`
    (its `{sub}`: the form's `sub`, the user whose page it was). Refused: `page` again, as
    console_form's are (`inline` False: the form is a table row's)."""
    form = await _posted(request)
    if isinstance(form, Response):
        return form
    cookie, fields = form
    then = _then(then, fields)
    try:
        await change(services(request), cookie, fields.get(field, ""))
    except StaleSignIn as stale:
        # Back to the confirmation page (same path, GET) once signed in again.
        return _sign_in_again(
            stale, f"{request.url.path}?{urlencode({field: fields.get(field, '')})}"
        )
    except OAuthError as refused:
        return await _again(request, refused, page, keys, fields, inline=inline)
    return redirect(then, 303)


async def _shown(request: Request, param: str, shown: Shown, template: str) -> Response:
    """A page about one thing, named by the query's `param`: the use case's page rendered."""
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    page = await shown(found, cookie, request.query_params.get(param, ""))
    return _render(request, template, {"page": page, "operator": page.operator})


def _then(then: str, fields: dict[str, str]) -> str:
    return then.format(sub=quote(fields.get("sub", ""), safe=""))


def _done(page: str, sub: str, done: str) -> Response:
    return redirect(f"{_then(page, {'sub': sub})}&done={done}", 303)


def _sign_in_again(stale: StaleSignIn, then: str) -> Response:
    asked = {"recent": "1", **({"mfa": "1"} if stale.mfa else {}), "then": then}
    return redirect(f"{SIGN_IN}?{urlencode(asked)}", 303)


@console_page
async def keys(request: Request) -> Response:
    found = services(request)
    page = await console_keys.keys_page(found, read_console_cookie(request, found.settings))
    return _keys_page(request, page)


@console_form(keys)
async def rotate_keys(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    page = await console_keys.rotate(services(request), cookie)
    if page.wait is None:
        return redirect("/console/keys?done=rotated", 303)
    # RFC 9110 §10.2.3: Retry-After, as the admin API's 409 key_not_ready says it.
    return _keys_page(request, page, 409, {"Retry-After": str(page.wait)})


confirm_revoke_key, revoke_key = confirmed(
    "kid",
    console_keys.key_to_revoke,
    "console_key_revoke.html",
    console_keys.revoke,
    "/console/keys?done=revoked",
)


def _keys_page(
    request: Request,
    page: console_keys.KeysPage,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    context = {"page": page, "operator": page.operator, "states": console_keys.STATES}
    response = _render(request, "console_keys.html", context, status)
    response.headers.update(headers or {})
    return response


@console_page
async def resources(request: Request) -> Response:
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    page = await console_resources.resources_page(found, cookie, _search(request)[1])
    return _render(request, "console_resources.html", {"page": page, "operator": page.operator})


@console_form(resources)
async def create_resource(request: Request, cookie: str | None, fields: dict[str, str]) -> Response:
    await console_resources.create_resource(services(request), cookie, fields)
    return redirect("/console/resources?done=created", 303)


confirm_delete_resource, delete_resource = confirmed(
    "resource",
    console_resources.resource_to_delete,
    "console_resource_delete.html",
    console_resources.delete_resource,
    "/console/resources?done=resource_deleted",
)


@console_page
async def registration_token_form(request: Request) -> Response:
    found = services(request)
    page = await console_tokens.token_form(found, read_console_cookie(request, found.settings))
    return _render(
        request, "console_registration_token.html", {"page": page, "operator": page.operator}
    )


confirm_revoke_registration_token, revoke_registration_token = confirmed(
    "token",
    console_tokens.token_to_revoke,
    "console_registration_token_revoke.html",
    console_tokens.revoke_token,
    "/console/registration-tokens?done=token_revoked",
)


@console_form(registration_token_form)
async def make_registration_token(
    request: Request, cookie: str | None, fields: dict[str, str]
) -> Response:
    made = await console_tokens.make_token(services(request), cookie, fields)
    context = {"made": made, "operator": made.operator}
    return _render(request, "console_registration_token_made.html", context, 201)


@console_page
@searched
async def audit(request: Request) -> Response:
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    page = await console_audit.trail_page(found, cookie, _audit_query(request))
    context = {"page": page, "operator": page.operator, "as_json": _as_json}
    return _render(request, "console_audit.html", context)


def _search(request: Request) -> tuple[str, str | None]:
    search = request.query_params.get("q", "").strip()
    after = request.query_params.get("after") or None
    if len(search) > 256 or (after is not None and len(after) > 256):
        raise InvalidRequest("The search is too long.")
    return search, after


def _audit_query(request: Request) -> AuditQuery:
    params = request.query_params
    before = params.get("before") or None
    if before is not None and (not before.isascii() or not before.isdigit()):
        raise InvalidRequest("before must be a whole number.")
    filters = {name: (params.get(name) or "").strip() or None for name in ("user", "type")}
    if any(value is not None and len(value) > 128 for value in filters.values()):
        raise InvalidRequest("A filter is too long.")
    return AuditQuery(
        limit=console_audit.PAGE,
        before=min(int(before), MAX_EVENT_ID + 1) if before else None,
        user=filters["user"],
        action=filters["type"],
    )


async def _posted(request: Request) -> tuple[str | None, dict[str, str]] | Response:
    """(the console cookie, the form's fields), or the 403 page when the form's CSRF token is
    not the console session's (nothing is done then)."""
    found = services(request)
    cookie = read_console_cookie(request, found.settings)
    fields = await read_fields(request)
    if not csrf.console_same_browser(request, found.settings, fields, cookie):
        return pages.error_page(request, found.settings, EXPIRED, 403)
    return cookie, fields


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    settings = services(request).settings
    cookie = read_console_cookie(request, settings) or ""
    done = DONE.get(request.query_params.get("done", ""))
    full = {
        **context,
        "failed": request.scope.get(FAILED),
        "csrf_token": csrf.console_token(request, cookie),
        "notice": pages.words(request, settings).gettext(done) if done else None,
        "when": _when,
    }
    return pages.render(request, settings, name, full, status)


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return "—"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
