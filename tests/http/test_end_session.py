"""/end-session asks the person before it ends anything on a request the app did not prove.

Any site can send a browser to /end-session (a top-level GET carries the SameSite=Lax session
cookie), so without an `id_token_hint` naming the signed-in user it answers with a page whose
form posts the request back with the browser's CSRF token (RP-Initiated Logout 1.0 §2, §6).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Clock, Registry
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    assert_strict_headers,
    authorize,
    code_for,
    csrf_token,
    exchange,
    form_action,
    hidden_fields,
    web_client,
)

BYE = "https://app.example/bye"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def web(registry: Registry) -> str:
    await registry.user("alice", "correct horse", scopes=("profile",))
    await registry.user("bob", "correct horse", scopes=("profile",))
    await web_client(registry, post_logout_redirect_uris=(BYE,))
    return WEB


async def signed_in(client: httpx.AsyncClient, username: str = "alice") -> dict[str, Any]:
    """The browser (`client`'s cookie jar) signs in; the app's tokens, ID token included."""
    flow = Flow.new(WEB, scope="openid profile")
    response = await exchange(client, await code_for(client, flow, username), flow)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def still_signed_in(client: httpx.AsyncClient, tokens: dict[str, Any]) -> bool:
    """The login session answers /authorize at once, and the app's family still refreshes."""
    again = await authorize(client, Flow.new(WEB, prompt="none").params)
    sso = "code=" in again.headers["location"]
    refreshed = await client.post(
        "/refresh", data={"client_id": WEB, "refresh_token": tokens["refresh_token"]}
    )
    if refreshed.status_code == 200:
        tokens["refresh_token"] = refreshed.json()["refresh_token"]
    assert sso == (refreshed.status_code == 200), (again.headers, refreshed.text)
    return sso


def ends_nothing(response: httpx.Response) -> None:
    assert "location" not in response.headers
    assert "authserver_session=;" not in response.headers.get("set-cookie", "")
    assert "authserver_rt=;" not in response.headers.get("set-cookie", "")


ASKED = [
    {"client_id": WEB, "post_logout_redirect_uri": BYE, "state": "s 1"},
    {"client_id": WEB},
    {},
]


@pytest.mark.parametrize("params", ASKED, ids=["redirect", "client", "bare"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_without_an_id_token_hint_the_person_is_asked_and_nothing_ends(
    client: httpx.AsyncClient, web: str, params: dict[str, str], method: str
) -> None:
    tokens = await signed_in(client)

    if method == "GET":
        page = await client.get("/end-session", params=params)
    else:  # an app's form post: RP-Initiated Logout §2 allows both
        page = await client.post("/end-session", data=params)

    assert page.status_code == 200, page.text
    assert_strict_headers(page)
    ends_nothing(page)
    assert "Sign out?" in page.text
    assert form_action(page.text) == "/end-session"
    fields = hidden_fields(page.text)
    assert fields == {"csrf_token": csrf_token(page.text), **params}
    assert fields["csrf_token"] == client.cookies["authserver_csrf"]  # bound to this browser
    csp = page.headers["content-security-policy"]
    # The confirmed answer redirects to the app, and browsers check form-action on it.
    redirects = "post_logout_redirect_uri" in params
    assert ("form-action 'self' https://app.example;" in csp) == redirects
    if redirects:  # a way to stay signed in, back to the app
        assert f'<a href="{BYE}">Stay signed in</a>' in page.text
    assert await still_signed_in(client, tokens)


async def test_confirming_ends_the_session_as_end_session_did(
    client: httpx.AsyncClient, web: str
) -> None:
    tokens = await signed_in(client)
    page = await client.get(
        "/end-session",
        params={"client_id": WEB, "post_logout_redirect_uri": BYE, "state": "s 1"},
    )

    response = await client.post(form_action(page.text), data=hidden_fields(page.text))

    assert response.status_code == 303, response.text
    assert response.headers["location"] == BYE + "?state=s+1"
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith("authserver_session=;") and "Max-Age=0" in c for c in cleared)
    assert any(c.startswith("authserver_rt=;") and "Max-Age=0" in c for c in cleared)
    assert not await still_signed_in(client, tokens)


async def test_confirming_without_a_redirect_shows_the_signed_out_page(
    client: httpx.AsyncClient, web: str
) -> None:
    tokens = await signed_in(client)
    page = await client.get("/end-session")

    response = await client.post("/end-session", data=hidden_fields(page.text))

    assert response.status_code == 200
    assert "You are signed out" in response.text
    assert_strict_headers(response)
    assert not await still_signed_in(client, tokens)


async def test_a_confirmation_without_the_browsers_token_is_refused_and_ends_nothing(
    client: httpx.AsyncClient, web: str
) -> None:
    tokens = await signed_in(client)
    page = await client.get("/end-session", params={"client_id": WEB})
    fields = hidden_fields(page.text)

    forged = await client.post("/end-session", data={**fields, "csrf_token": "forged"})
    empty = await client.post("/end-session", data={**fields, "csrf_token": ""})
    from_elsewhere = await client.post(
        "/end-session", data=fields, headers={"Origin": "https://evil.example"}
    )
    # A page on another site posts the form: the Strict cookie does not come with it.
    csrf_cookie = client.cookies["authserver_csrf"]
    del client.cookies["authserver_csrf"]
    foreign = await client.post("/end-session", data=fields)
    client.cookies.set("authserver_csrf", csrf_cookie)

    for response in (forged, empty, from_elsewhere, foreign):
        assert response.status_code == 403, response.text
        assert_strict_headers(response)
        ends_nothing(response)
        assert "another site" in response.text
    assert await still_signed_in(client, tokens)


async def test_a_confirmation_is_checked_like_the_request(
    client: httpx.AsyncClient, web: str
) -> None:
    tokens = await signed_in(client)
    page = await client.get("/end-session", params={"client_id": WEB})
    fields = hidden_fields(page.text)

    tampered = await client.post(
        "/end-session", data={**fields, "post_logout_redirect_uri": "https://evil.example/"}
    )

    assert tampered.status_code == 400
    assert "not registered" in tampered.text
    ends_nothing(tampered)
    assert await still_signed_in(client, tokens)


async def test_the_signed_in_users_id_token_hint_ends_at_once_even_expired(
    client: httpx.AsyncClient, web: str, clock: Clock
) -> None:
    tokens = await signed_in(client)
    clock.advance(600)  # the ID token lived 300 s; as a hint it still names the user

    hint = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE}
    response = await client.get("/end-session", params=hint)

    assert response.status_code == 303
    assert response.headers["location"] == BYE
    assert not await still_signed_in(client, tokens)


async def test_an_id_token_hint_of_another_user_is_asked_about(
    client: httpx.AsyncClient, web: str
) -> None:
    # Bob signed in here before (a shared computer); his ID token is no proof for Alice's sign-in.
    bobs = await signed_in(client, "bob")
    client.cookies.clear()
    tokens = await signed_in(client, "alice")

    hint = {"id_token_hint": bobs["id_token"], "post_logout_redirect_uri": BYE}
    page = await client.get("/end-session", params=hint)

    assert page.status_code == 200
    assert "Sign out?" in page.text
    ends_nothing(page)
    # The client the hint named is carried over, the hint itself is not.
    assert hidden_fields(page.text) == {
        "csrf_token": csrf_token(page.text),
        "client_id": WEB,
        "post_logout_redirect_uri": BYE,
    }
    assert await still_signed_in(client, tokens)
    confirmed = await client.post("/end-session", data=hidden_fields(page.text))
    assert confirmed.status_code == 303 and confirmed.headers["location"] == BYE
    assert not await still_signed_in(client, tokens)


async def test_a_session_past_its_idle_time_is_still_asked_about(
    client: httpx.AsyncClient, web: str, clock: Clock
) -> None:
    # It no longer signs anyone in, but ending it still revokes the families it started.
    tokens = await signed_in(client)
    clock.advance(3601)

    page = await client.get("/end-session", params={"client_id": WEB})

    assert page.status_code == 200
    assert "Sign out?" in page.text
    ends_nothing(page)
    refreshed = await client.post(
        "/refresh", data={"client_id": WEB, "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200


@pytest.mark.parametrize("cookie", ["none", "ended"])
async def test_without_a_login_session_there_is_nothing_to_ask(
    client: httpx.AsyncClient, web: str, cookie: str
) -> None:
    if cookie == "ended":
        tokens = await signed_in(client)
        stale = client.cookies["authserver_session"]
        ended = await client.get("/end-session", params={"id_token_hint": tokens["id_token"]})
        assert "You are signed out" in ended.text
        client.cookies.set("authserver_session", stale)  # ended on the server all the same

    redirected = await client.get(
        "/end-session", params={"client_id": WEB, "post_logout_redirect_uri": BYE, "state": "x"}
    )
    page = await client.get("/end-session")

    assert redirected.status_code == 303 and redirected.headers["location"] == BYE + "?state=x"
    assert page.status_code == 200 and "You are signed out" in page.text


async def cross_site_post(client: httpx.AsyncClient, data: dict[str, str]) -> httpx.Response:
    """A form posted to /end-session from another site: the browser sends neither the Lax
    login-session cookie nor the Strict ones (RFC 6265bis §5.6.7.1); it keeps what it is sent."""
    kept = dict(client.cookies)
    client.cookies.clear()
    response = await client.post("/end-session", data=data)
    for name, value in kept.items():
        if name not in client.cookies:
            client.cookies.set(name, value)
    return response


def resent_fields(page: httpx.Response) -> dict[str, str]:
    """The page that posts a cookieless request again, now from our own origin."""
    assert page.status_code == 200, page.text
    assert_strict_headers(page)
    ends_nothing(page)
    assert form_action(page.text) == "/end-session"
    # No inline script but the one the CSP names by its nonce: it submits the form.
    csp = page.headers["content-security-policy"]
    nonce = csp.split("script-src 'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.text
    assert page.text.count("<script") == 1
    return hidden_fields(page.text)


@pytest.mark.parametrize("hinted", [False, True], ids=["no-hint", "hint"])
async def test_a_cross_site_post_ends_nothing_and_is_posted_again_from_our_page(
    client: httpx.AsyncClient, web: str, hinted: bool
) -> None:
    tokens = await signed_in(client)
    params = {"client_id": WEB, "post_logout_redirect_uri": BYE, "state": "s 1"}
    if hinted:
        params["id_token_hint"] = tokens["id_token"]

    page = await cross_site_post(client, params)

    # Not "signed out", not the app's URI with its state, no cookie cleared: nothing ended.
    fields = resent_fields(page)
    assert {name: fields[name] for name in params} == params
    assert "form-action 'self' https://app.example;" in page.headers["content-security-policy"]
    assert await still_signed_in(client, tokens)

    # Posted again from our page, same-site: the login session's cookie comes along.
    again = await client.post("/end-session", data=fields)

    if hinted:  # the signed-in user's own ID token: ended at once, as a GET would be
        assert again.status_code == 303, again.text
        assert again.headers["location"] == BYE + "?state=s+1"
        assert not await still_signed_in(client, tokens)
    else:  # as any request without the hint: the person is asked
        assert again.status_code == 200 and "Sign out?" in again.text
        ends_nothing(again)
        assert await still_signed_in(client, tokens)


async def test_the_resent_marker_from_another_site_is_refused(
    client: httpx.AsyncClient, web: str
) -> None:
    tokens = await signed_in(client)
    fields = resent_fields(await cross_site_post(client, {"client_id": WEB}))

    # Another site copies the form: the Strict CSRF cookie does not come with its post.
    forged = await cross_site_post(client, fields)

    assert forged.status_code == 403, forged.text
    ends_nothing(forged)
    assert await still_signed_in(client, tokens)


async def test_a_resent_post_with_truly_no_session_says_so_without_clearing_cookies(
    client: httpx.AsyncClient, web: str
) -> None:
    params = {"client_id": WEB, "post_logout_redirect_uri": BYE, "state": "x"}
    fields = resent_fields(await cross_site_post(client, params))

    again = await client.post("/end-session", data=fields)

    # There is no session in this browser, so there is nothing to end or to ask about: back to
    # the app, as a GET without a session is answered, but no cookie is touched.
    assert again.status_code == 303 and again.headers["location"] == BYE + "?state=x"
    assert again.headers.get("set-cookie") is None
