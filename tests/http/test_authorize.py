"""GET /authorize (API.md, "Browser sign-in"): every rule of the contract through real HTTP."""

from __future__ import annotations

import httpx
import jwt
import pytest

from tests.conftest import ISSUER, Clock, Registry
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    authorize,
    code_for,
    exchange,
    query,
    sign_in,
    web_client,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    return await registry.user("alice", "correct horse", scopes=("profile",))


@pytest.fixture
async def web(registry: Registry) -> str:
    await web_client(registry)
    return WEB


def assert_error_page(response: httpx.Response, status: int = 400) -> None:
    """RFC 6749 §4.1.2.1: an HTML page, never a redirect to an untrusted URI."""
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "<h1" in response.text


def assert_error_redirect(response: httpx.Response, flow: Flow, error: str) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?"), location
    answer = query(location)
    assert answer["error"] == error, answer
    assert answer["error_description"]
    assert answer["state"] == flow.params["state"]
    assert answer["iss"] == ISSUER  # RFC 9207
    assert "code" not in answer
    return answer


async def test_a_browser_signs_in_and_the_client_exchanges_the_code(
    client: httpx.AsyncClient, alice: str, web: str, clock: Clock
) -> None:
    flow = Flow.new(scope="openid profile", nonce="n-0S6_WzA2Mj")

    first = await authorize(client, flow.params)
    assert first.status_code == 302
    login_url = first.headers["location"]
    assert login_url.startswith(f"{ISSUER}/login?")
    assert query(login_url) == flow.params  # the request travels unchanged
    signed_in = await sign_in(client, login_url)
    assert signed_in.status_code == 303, signed_in.text
    answer = query(signed_in.headers["location"])
    assert signed_in.headers["location"].startswith(CALLBACK + "?code=")
    assert answer["state"] == flow.params["state"] and answer["iss"] == ISSUER
    assert len(answer["code"]) >= 22  # at least 128 bits

    tokens = await exchange(client, answer["code"], flow)

    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "openid profile"
    assert body["refresh_token"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == alice and claims["client_id"] == web and claims["sid"]
    refreshed = await client.post(
        "/refresh", data={"client_id": web, "refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text


async def test_redirect_uri_may_be_omitted_only_when_the_client_has_exactly_one(
    client: httpx.AsyncClient, alice: str, registry: Registry, web: str
) -> None:
    await web_client(registry, "single", redirect_uris=(CALLBACK,))
    flow = Flow.new("single", redirect_uri="")
    code = await code_for(client, flow)
    tokens = await exchange(client, code, flow, redirect_uri="")
    assert tokens.status_code == 200, tokens.text

    two = Flow.new(web, redirect_uri="")
    assert_error_page(await authorize(client, two.params))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example/cb/",  # suffix
        "https://app.example/cbx",
        "https://app.example/c",  # prefix
        "https://app.example/cb?x=1",
        "https://app.example/cb#frag",  # fragment
        "https://APP.example/cb",  # case
        "HTTPS://app.example/cb",
        "https://app.example/%63b",  # encoded
        "https://app.example/cb/../cb",
        "https://app.example@evil.example/cb",  # userinfo
        "https://evil.example@app.example/cb",
        "https://app.example.evil.example/cb",
        "https://app.example:443/cb",
        "http://app.example/cb",
        "//evil.example/cb",
        "",
    ],
)
async def test_an_unregistered_redirect_uri_gets_the_error_page_never_a_redirect(
    client: httpx.AsyncClient, web: str, redirect_uri: str
) -> None:
    flow = Flow.new(web)
    flow.params["redirect_uri"] = redirect_uri
    assert_error_page(await authorize(client, flow.params))
    # Even a request that is wrong in other ways too is not redirected.
    flow.params["response_type"] = "token"
    assert_error_page(await authorize(client, flow.params))


async def test_an_unknown_or_missing_client_gets_the_error_page(
    client: httpx.AsyncClient, web: str
) -> None:
    assert_error_page(await authorize(client, Flow.new("nobody").params))
    flow = Flow.new(web)
    del flow.params["client_id"]
    assert_error_page(await authorize(client, flow.params))
    twice = await client.get(
        "/authorize?client_id=web&client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
    )
    assert_error_page(twice)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": ""}, "invalid_request"),  # PKCE downgrade: no challenge
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),  # RFC 7636 §4.4.1
        ({"code_challenge": "short"}, "invalid_request"),
        ({"code_challenge": "x" * 129}, "invalid_request"),
        ({"code_challenge": "+" * 43}, "invalid_request"),
        ({"response_type": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"prompt": "select_account"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"nonce": "n" * 513}, "invalid_request"),
    ],
)
async def test_other_errors_go_back_to_the_client_with_state_and_iss(
    client: httpx.AsyncClient, web: str, change: dict[str, str], error: str
) -> None:
    flow = Flow.new(web)
    for name, value in change.items():
        if value:
            flow.params[name] = value
        else:
            flow.params.pop(name, None)
    assert_error_redirect(await authorize(client, flow.params), flow, error)


async def test_a_client_without_the_code_grant_is_refused(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry, "pw-only", grant_types=("password",))
    flow = Flow.new("pw-only")
    assert_error_redirect(await authorize(client, flow.params), flow, "unauthorized_client")


async def test_a_repeated_parameter_is_invalid_request(client: httpx.AsyncClient, web: str) -> None:
    flow = Flow.new(web)
    url = httpx.URL("/authorize", params=flow.params)
    response = await client.get(str(url) + "&scope=profile&scope=openid")
    assert_error_redirect(response, flow, "invalid_request")


async def test_prompt_none_without_a_session_is_login_required(
    client: httpx.AsyncClient, web: str
) -> None:
    flow = Flow.new(web, prompt="none")
    assert_error_redirect(await authorize(client, flow.params), flow, "login_required")


async def test_state_comes_back_verbatim_and_iss_names_the_server(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    flow = Flow.new(web, state="a b&c=d/é?%20")
    code = await code_for(client, flow)  # asserts state and iss
    assert code


async def test_a_second_client_signs_in_without_the_form(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry
) -> None:
    await code_for(client, Flow.new(web))
    await web_client(registry, "other-app")

    flow = Flow.new("other-app", prompt="none")
    response = await authorize(client, flow.params)

    assert response.status_code == 302
    assert response.headers["location"].startswith(CALLBACK + "?code=")
    tokens = await exchange(client, query(response.headers["location"])["code"], flow)
    assert tokens.status_code == 200, tokens.text
    assert (
        jwt.decode(tokens.json()["access_token"], options={"verify_signature": False})["client_id"]
        == "other-app"
    )


async def test_prompt_login_forces_the_form_even_with_a_session(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    await code_for(client, Flow.new(web))
    flow = Flow.new(web, prompt="login")
    response = await authorize(client, flow.params)
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{ISSUER}/login?")
    # And signing in again completes the request (no loop back to the form).
    answer = await sign_in(client, response.headers["location"])
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(CALLBACK + "?code=")


async def test_max_age_asks_again_once_the_sign_in_is_older(
    client: httpx.AsyncClient, alice: str, web: str, clock: Clock
) -> None:
    await code_for(client, Flow.new(web))
    clock.advance(120)
    young = await authorize(client, Flow.new(web, max_age="300").params)
    assert young.headers["location"].startswith(CALLBACK + "?code=")
    old = await authorize(client, Flow.new(web, max_age="60").params)
    assert old.headers["location"].startswith(f"{ISSUER}/login?")
    old_none = Flow.new(web, max_age="60", prompt="none")
    assert_error_redirect(await authorize(client, old_none.params), old_none, "login_required")


async def test_the_login_session_ends_when_idle_and_at_its_absolute_lifetime(
    client: httpx.AsyncClient, alice: str, web: str, clock: Clock
) -> None:
    await code_for(client, Flow.new(web))
    for _ in range(30):  # used every 50 min: never idle 1 h, but 24 h pass
        clock.advance(3000)
        flow = Flow.new(web, prompt="none")
        response = await authorize(client, flow.params)
        if "error=" in response.headers["location"]:
            break
    assert 86_400 <= 3000 * (_ + 1) < 86_400 + 3000, "the absolute lifetime ended it"

    await code_for(client, Flow.new(web, prompt="login"))
    clock.advance(3601)
    idle = Flow.new(web, prompt="none")
    assert_error_redirect(await authorize(client, idle.params), idle, "login_required")


async def test_the_users_own_logout_everywhere_ends_the_login_session(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    first = Flow.new(web)
    code = await code_for(client, first)
    flow = Flow.new(web)
    tokens = await exchange(client, await code_for(client, flow), flow)
    bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    assert (await client.post("/logout/all", headers=bearer)).status_code == 204
    again = Flow.new(web, prompt="none")
    assert_error_redirect(await authorize(client, again.params), again, "login_required")
    # A code of that session, not yet exchanged, starts nothing either.
    assert (await exchange(client, code, first)).status_code == 400


@pytest.mark.parametrize("action", ["disable", "logout-all"])
async def test_disable_and_logout_all_end_the_login_session(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry, spa: str, action: str
) -> None:
    await code_for(client, Flow.new(web))
    root = await admin_headers(client, registry)
    assert (await client.post(f"/admin/users/{alice}/{action}", headers=root)).status_code == 204
    flow = Flow.new(web, prompt="none")
    assert_error_redirect(await authorize(client, flow.params), flow, "login_required")


async def test_a_disabled_client_gets_the_error_page_as_an_unknown_one(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry, spa: str
) -> None:
    # Alice is signed in: single sign-on would otherwise issue a code at once.
    await code_for(client, Flow.new(web))
    login_url = (await authorize(client, Flow.new(web, prompt="login").params)).headers["location"]
    root = await admin_headers(client, registry)
    disabled = await client.patch(f"/admin/clients/{web}", json={"disabled": True}, headers=root)
    assert disabled.status_code == 200, disabled.text

    for flow in (Flow.new(web), Flow.new(web, prompt="none"), Flow.new(web, prompt="login")):
        response = await authorize(client, flow.params)
        assert_error_page(response)
        assert "not registered" in response.text
    # Nor does the sign-in page still offer to continue to it.
    assert_error_page(await client.get(login_url))


async def test_max_age_zero_always_asks_for_the_password(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    # OpenID Connect Core errata 2: max_age=0 is equivalent to prompt=login, even in the very
    # second of the sign-in (the test clock stands still).
    await code_for(client, Flow.new(web))
    again = await authorize(client, Flow.new(web, max_age="0").params)
    assert again.headers["location"].startswith(f"{ISSUER}/login?")
    silent = Flow.new(web, max_age="0", prompt="none")
    assert_error_redirect(await authorize(client, silent.params), silent, "login_required")


@pytest.mark.parametrize(
    ("name", "error"),
    [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")],
)
async def test_request_objects_are_refused_not_ignored(
    client: httpx.AsyncClient, alice: str, web: str, name: str, error: str
) -> None:
    # OpenID Connect Core §6: request objects are not supported here, so say so, rather than
    # answer a request whose parameters the client may have put only in the object.
    flow = Flow.new(web, **{name: "eyJhbGciOiJub25lIn0.e30."})
    assert_error_redirect(await authorize(client, flow.params), flow, error)
