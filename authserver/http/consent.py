"""The consent page GET|POST /consent (actions/consent.py): the authorization request in the
query string as /login carries it, the form CSRF-bound to the login session as /login's, and
the same headers and languages."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import consent as consenting
from authserver.actions.authorize import ErrorPage, Redirect, SignIn, StepUp
from authserver.actions.consent import ConsentPage
from authserver.http import csrf, pages
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import read_session_cookie
from authserver.http.forms import read_fields
from authserver.http.responses import redirect
from authserver.http.sign_in import FORM_EXPIRED, at_path
from authserver.i18n.translations import N_
from authserver.services import Services

# What a scope lets the app do, in a person's words; any other scope is named as it is.
SCOPE_WORDS = {
    "openid": N_("Know who you are on this server"),
    "profile": N_("See your name and profile"),
    "email": N_("See your email address"),
    "offline_access": N_("Keep its access while you are away"),
    "admin": N_("Administer this server with your rights"),
}
OTHER_SCOPE = N_("Use the permission “%(scope)s”")
RESOURCE_WORDS = N_("Use the service at %(host)s (%(resource)s) for you")
NO_DECISION = N_("Choose Allow or Deny.")
DECISIONS = {"allow": True, "deny": False}


async def consent_form(request: Request) -> Response:
    found = services(request)
    try:
        outcome = await consenting.consent_page(
            found,
            request.query_params.multi_items(),
            read_session_cookie(request, found.settings),
            address=client_address(request, found.settings.trusted_proxies),
        )
    except ErrorPage as exc:
        return pages.error_page(request, found.settings, exc.description, 400)
    if not isinstance(outcome, ConsentPage):
        return _onwards(request, outcome, 302)
    token = csrf.token_for(request, found.settings)
    response = _page(request, found, outcome, token)
    csrf.remember(response, found.settings, token)
    return response


async def consent(request: Request) -> Response:
    found = services(request)
    settings = found.settings
    fields = await read_fields(request)
    if not csrf.same_browser(request, settings, fields):
        return pages.error_page(request, settings, FORM_EXPIRED, 403)
    allow = DECISIONS.get(fields.get("decision", ""))
    if allow is None:
        return pages.error_page(request, settings, NO_DECISION, 400)
    try:
        outcome = await consenting.decide(
            found,
            request.query_params.multi_items(),
            read_session_cookie(request, settings),
            allow=allow,
            address=client_address(request, settings.trusted_proxies),
        )
    except ErrorPage as exc:
        return pages.error_page(request, settings, exc.description, 400)
    return _onwards(request, outcome, 303)


def _onwards(request: Request, outcome: Redirect | SignIn | StepUp, status: int) -> Response:
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, status)
    # What /authorize would ask first (no live login session, one too old or too weak for the
    # request): sign in or step up, then back here through authorize.complete.
    page = "/login/factor" if isinstance(outcome, StepUp) else "/login"
    return redirect(at_path(page, request), 303)


def _page(request: Request, found: Services, shown: ConsentPage, token: str) -> Response:
    words = pages.words(request, found.settings)
    asked = [
        words.gettext(SCOPE_WORDS[scope])
        if scope in SCOPE_WORDS
        else words.gettext(OTHER_SCOPE) % {"scope": scope}
        for scope in shown.scopes
    ]
    asked += [
        words.gettext(RESOURCE_WORDS) % {"host": urlsplit(uri).hostname, "resource": uri}
        for uri in shown.resources
    ]
    context = {
        "action": at_path("/consent", request),
        "csrf_token": token,
        "client_name": shown.request.client.display_name,
        "username": shown.username,
        "host": shown.redirect_host,
        "asked": asked,
        "loopback_only": shown.loopback_only,
    }
    targets = (pages.origin_of(shown.request.redirect_uri),)
    return pages.render(request, found.settings, "consent.html", context, form_targets=targets)
