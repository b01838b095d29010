"""The consent page GET|POST /consent (API.md, "Consent"): a third-party client (`consent:
true`) asks a signed-in user for scopes and resources their remembered grant does not cover.

/authorize (authorize.complete) sends the browser here with the authorization request in the
query string, as it sends it to the sign-in page. Nothing of the page is trusted: the request is
checked again as /authorize checks it (`resume`, then `signed_in_enough`: fresh and strong
enough, else the sign-in or step-up /authorize would ask), the user is the browser's live
login session (the form's CSRF token is bound to it), and the only field the form posts is the
decision. So a forged or replayed form can allow nothing the user did not see, for nobody else.

"Allow" widens the user's grant for the client (one statement, audited `consent.granted`) and
goes on as /authorize would: a code to the redirect URI. "Deny" sends `access_denied` there
(audited `consent.denied`); the grant held stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from authserver.accounts.consents import consent_event
from authserver.accounts.login_sessions import LoginSession
from authserver.actions.authorize import (
    AuthorizationRequest,
    ErrorPage,
    Params,
    Redirect,
    SignIn,
    StepUp,
    complete,
    error_redirect,
    resume,
    signed_in_enough,
)
from authserver.services import Services
from authserver.tokens.scopes import grant

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ConsentPage:
    """What the page shows: who asks (its name, the host its answer goes to), and what."""

    request: AuthorizationRequest
    username: str  # who is signed in: the user allows for themselves only
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    redirect_host: str
    loopback_only: bool  # every redirect URI of the client is on this computer


@dataclass(frozen=True)
class _Asked:
    request: AuthorizationRequest
    session: LoginSession
    username: str
    scopes: tuple[str, ...]


async def consent_page(
    services: Services, params: Params, session_cookie: str | None, *, address: str | None
) -> ConsentPage | Redirect | SignIn | StepUp:
    """The page for this request and browser; or the error redirect of a request gone bad, or
    what /authorize would ask first (a sign-in, a step-up). Raises ErrorPage."""
    asked = await _asked(services, params, session_cookie, address)
    if not isinstance(asked, _Asked):
        return asked
    request = asked.request
    hosts = [urlsplit(uri).hostname or "" for uri in request.client.redirect_uris]
    return ConsentPage(
        request=request,
        username=asked.username,
        scopes=asked.scopes,
        resources=request.resources,
        redirect_host=urlsplit(request.redirect_uri).hostname or "",
        loopback_only=all(host in LOOPBACK_HOSTS for host in hosts),
    )


async def decide(
    services: Services,
    params: Params,
    session_cookie: str | None,
    *,
    allow: bool,
    address: str | None,
) -> Redirect | SignIn | StepUp:
    """The form's post: Allow (remember, then the code) or Deny (access_denied)."""
    asked = await _asked(services, params, session_cookie, address)
    if not isinstance(asked, _Asked):
        return asked
    request, session, now = asked.request, asked.session, services.clock()
    client_id = request.client.client_id
    if not allow:
        event = consent_event("denied", session.user_id, client_id, now)
        await services.audit.record([event])
        # RFC 6749 §4.1.2.1: access_denied, the resource owner denied the request.
        return error_redirect(
            services, request.redirect_uri, "access_denied",
            "The user did not allow the application.", request.state,
        )  # fmt: skip
    event = consent_event(
        "granted", session.user_id, client_id, now,
        scope=" ".join(asked.scopes), resources=list(request.resources),
    )  # fmt: skip
    await services.consents.allow(
        session.user_id, client_id, asked.scopes, request.resources, now, event
    )
    return await complete(services, request, session, consented=True)


async def _asked(
    services: Services, params: Params, session_cookie: str | None, address: str | None
) -> _Asked | Redirect | SignIn | StepUp:
    target = await resume(services, params, address=address)
    if target is None:
        raise ErrorPage("The consent page was opened without an authorization request.")
    if isinstance(target, Redirect):
        return target
    if not target.client.consent:
        raise ErrorPage("This application does not ask for consent.")
    # The URL is anyone's to make: the session must be what /authorize would have asked for
    # (fresh enough for max_age, a second factor for acr_values=mfa or require_mfa).
    session = await signed_in_enough(services, target, session_cookie)
    if not isinstance(session, LoginSession):
        return session
    user = await services.users.by_id(session.user_id)
    if user is None or user.disabled:
        return SignIn(target)
    # What the code will carry: as complete() grants it, so the page shows what is given.
    scopes = grant(target.scope, target.client.scopes, user.scopes).split()
    return _Asked(target, session, user.username, tuple(scopes))
