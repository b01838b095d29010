"""OpenID Connect's /end-session (RP-Initiated Logout 1.0)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from authserver.accounts.login_sessions import MAX_COOKIE, hash_session_token
from authserver.actions.authorize import ErrorPage
from authserver.inputs import storable
from authserver.services import Services
from authserver.tokens.id_tokens import hinted_client


@dataclass(frozen=True)
class SignedOut:
    redirect_to: str | None  # the client's post-logout URI (with state), or None: our page
    # Whether the request carried a login-session cookie (now ended): only then are the
    # browser's cookies cleared. Without one there was nothing here to end, and clearing the
    # SPA's refresh cookie would sign it out while its family lives on.
    had_session: bool = True


@dataclass(frozen=True)
class PostAgain:
    """A POST without the login-session cookie may come from another site: the cookie is
    SameSite=Lax, so the browser withheld it. Nothing is ended or cleared; a page of ours posts
    the same `fields` again, same-site this time, so that the cookie comes along if it exists.
    That gives another site no more than a link to /end-session already does."""

    fields: dict[str, str]  # every parameter, the id_token_hint included
    post_logout_redirect_uri: str | None  # registered for the client: checked already


@dataclass(frozen=True)
class ConfirmSignOut:
    """The request may not come from the app (no ID token of the signed-in user): the person
    is asked first, and nothing is ended until they confirm (RP-Initiated Logout §2, §6)."""

    fields: dict[str, str]  # what the confirmation re-sends: client_id, the URI, state
    client_id: str | None
    post_logout_redirect_uri: str | None  # registered for client_id: checked already
    client_name: str | None = None  # of that client, when it has one (the page names it)


# The parameters a confirmation carries over. Not the id_token_hint: it proved nothing here,
# and a token has no business in a page.
CARRIED = ("client_id", "post_logout_redirect_uri", "state")


async def end_session(
    services: Services,
    params: dict[str, str],
    session_cookie: str | None,
    *,
    confirmed: bool = False,
    maybe_cross_site: bool = False,
) -> SignedOut | ConfirmSignOut | PostAgain:
    """RP-Initiated Logout 1.0 §2-§3: ends the login session and every family it started.

    A post_logout_redirect_uri must be registered, exactly, by the client that `client_id`
    or the `id_token_hint` names (both, if given, must agree); otherwise ErrorPage and nothing
    is ended, so the endpoint cannot serve as an open redirector.

    Any site can send a browser here, so unless the request carries an ID token we issued to
    the user this browser is signed in as, or the person `confirmed` it on our page, it ends
    nothing and asks (ConfirmSignOut). A browser without a session has nothing to lose: it is
    answered at once, unless `maybe_cross_site` (a POST that neither our confirmation nor our
    PostAgain page sent) says its missing cookie may have been withheld: then PostAgain."""
    if not all(storable(name) and storable(value) for name, value in params.items()):
        raise ErrorPage("The request contains a character not allowed.")
    client_id = params.get("client_id") or None
    hint = params.get("id_token_hint")
    hinted: tuple[str, str] | None = None
    if hint:
        hinted = hinted_client(services.keys.ring, hint, services.settings.issuer)
        if hinted is None:
            raise ErrorPage("The id_token_hint is not an ID token of this server.")
        if client_id is not None and client_id != hinted[0]:
            raise ErrorPage("The id_token_hint was issued to another client.")
        client_id = hinted[0]
    target = params.get("post_logout_redirect_uri")
    client = None
    if target is not None:
        client = await services.clients.get(client_id) if client_id else None
        if client is None or target not in client.post_logout_redirect_uris:
            raise ErrorPage("The post-logout redirect URI is not registered for this client.")
    token_hash = (
        hash_session_token(session_cookie)
        if session_cookie and len(session_cookie) <= MAX_COOKIE
        else None
    )
    if token_hash is None and maybe_cross_site:
        return PostAgain(dict(params), target)
    if token_hash is not None and not confirmed:
        holder = await services.login_sessions.holder(token_hash)
        if holder is not None and (hinted is None or hinted[1] != holder):
            fields = {name: params[name] for name in CARRIED if name in params}
            if client_id is not None:
                fields["client_id"] = client_id  # the hint's, when only the hint named it
            # Named only once its URI proved the client (a bare client_id proves nothing).
            name = client.client_name if client is not None else None
            return ConfirmSignOut(fields, client_id, target, name)
    now = services.clock()
    if token_hash is not None:
        await services.login_sessions.end(token_hash, now, client_id)
    had_session = token_hash is not None
    if target is None:
        return SignedOut(None, had_session)
    state = params.get("state")
    if state is None:
        return SignedOut(target, had_session)
    separator = "&" if "?" in target else "?"
    return SignedOut(target + separator + urlencode({"state": state}), had_session)
