"""The refresh cookie of SPA clients (refresh_delivery "cookie") and its CSRF defence.

The browser keeps the refresh token in an HttpOnly cookie the page cannot read; any page can
make the browser send it, so every endpoint that reads it demands an allowed Origin first.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests._refresh_rows import family_revoked_at, spent_at
from tests.conftest import Clock, Registry, password_login

APP = "https://app.example"
OTHER_APP = "http://localhost:5173"
SESSION_TTL = 2_592_000  # the default AUTHSERVER_SESSION_TTL
SECURE = "__Host-authserver_rt"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"allowed_origins": f"{APP}, {OTHER_APP}"}


@dataclass
class Cookie:
    name: str
    value: str
    attributes: list[str]  # as sent, in order

    @property
    def max_age(self) -> int:
        (value,) = (a.split("=", 1)[1] for a in self.attributes if a.startswith("Max-Age="))
        return int(value)


def the_cookie(response: httpx.Response) -> Cookie:
    (header,) = response.headers.get_list("set-cookie")
    pair, *attributes = header.split("; ")
    name, _, value = pair.partition("=")
    return Cookie(name, value, attributes)


@pytest.fixture
async def browser(registry: Registry) -> str:
    """A public SPA client whose refresh tokens travel in the cookie; alice can log in."""
    await registry.client(
        "browser",
        public=True,
        grant_types=("password", "refresh_token"),
        refresh_delivery="cookie",
    )
    await registry.user("alice", "correct horse")
    return "browser"


async def browser_login(
    client: httpx.AsyncClient, origin: str | None = APP, client_id: str = "browser"
) -> httpx.Response:
    return await client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse",
            "client_id": client_id,
        },
        headers={} if origin is None else {"Origin": origin},
    )


async def log_in(client: httpx.AsyncClient, origin: str = APP) -> Cookie:
    response = await browser_login(client, origin)
    assert response.status_code == 200, response.text
    client.cookies.clear()  # each test sends the cookie it means to, by hand
    return the_cookie(response)


def sent(token: str, origin: str | None = APP, name: str = SECURE) -> dict[str, str]:
    headers = {"Cookie": f"{name}={token}"}
    if origin is not None:
        headers["Origin"] = origin
    return headers


@pytest.fixture(params=["/refresh", "/token"])
def refresh_path(request: pytest.FixtureRequest) -> str:
    path: str = request.param
    return path


async def refresh_with_cookie(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> httpx.Response:
    data = {"client_id": "browser"}
    if path == "/token":
        data["grant_type"] = "refresh_token"
    return await client.post(path, data=data, headers=headers)


# --- delivery -------------------------------------------------------------------------------


async def test_login_sets_the_cookie_with_every_flag_and_no_token_in_the_body(
    client: httpx.AsyncClient, browser: str
) -> None:
    response = await browser_login(client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert body["access_token"] and body["token_type"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"
    cookie = the_cookie(response)
    assert cookie.name == SECURE
    assert len(cookie.value) >= 43  # 256 bits, base64url
    assert cookie.attributes == [
        "Path=/",
        f"Max-Age={SESSION_TTL}",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ]
    assert cookie.value not in response.text


async def test_rotation_sets_a_new_cookie_whose_max_age_is_the_session_remaining_life(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine, clock: Clock, refresh_path: str
) -> None:
    first = await log_in(client)
    clock.advance(1000)
    response = await refresh_with_cookie(client, refresh_path, sent(first.value))
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()
    second = the_cookie(response)
    assert second.name == SECURE and second.value != first.value
    assert second.max_age == SESSION_TTL - 1000
    assert await spent_at(engine, first.value) == clock.now
    assert await spent_at(engine, second.value) is None


async def test_body_clients_still_get_the_token_in_the_body_and_no_cookie(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    response = await password_login(client, client_id=spa)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]
    assert "set-cookie" not in response.headers


async def test_a_cookie_client_may_present_its_token_in_the_body_from_an_allowed_origin(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine
) -> None:
    first = await log_in(client)
    data = {"client_id": "browser", "refresh_token": first.value}
    refused = await client.post("/refresh", data=data)  # no Origin
    assert refused.status_code == 403
    assert await spent_at(engine, first.value) is None
    response = await client.post("/refresh", data=data, headers={"Origin": APP})
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()
    assert the_cookie(response).value != first.value
    assert await spent_at(engine, first.value) is not None


async def test_refresh_without_cookie_or_body_token_is_invalid_request(
    client: httpx.AsyncClient, browser: str
) -> None:
    response = await client.post("/refresh", data={"client_id": "browser"}, headers={"Origin": APP})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_the_second_allowed_origin_is_allowed_too(
    client: httpx.AsyncClient, browser: str
) -> None:
    first = await log_in(client)
    response = await refresh_with_cookie(client, "/refresh", sent(first.value, OTHER_APP))
    assert response.status_code == 200, response.text


# --- CSRF: the Origin of a request that carries the cookie -----------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "null",
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",  # another scheme is another origin
        "https://app.example:8443",
        "HTTPS://APP.EXAMPLE ",
    ],
)
async def test_a_cookie_from_a_foreign_or_missing_origin_rotates_nothing(
    client: httpx.AsyncClient,
    browser: str,
    engine: AsyncEngine,
    refresh_path: str,
    origin: str | None,
) -> None:
    cookie = await log_in(client)
    response = await refresh_with_cookie(client, refresh_path, sent(cookie.value, origin))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    assert await spent_at(engine, cookie.value) is None
    assert await family_revoked_at(engine, cookie.value) is None
    # ... and the token still works from the real app.
    again = await refresh_with_cookie(client, refresh_path, sent(cookie.value))
    assert again.status_code == 200, again.text


async def test_a_foreign_origin_is_refused_even_with_a_body_token(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine
) -> None:
    cookie = await log_in(client)
    response = await client.post(
        "/refresh",
        data={"client_id": "browser", "refresh_token": cookie.value},
        headers=sent(cookie.value, "https://evil.example"),
    )
    assert response.status_code == 403
    assert await spent_at(engine, cookie.value) is None


async def test_without_the_cookie_no_origin_is_needed(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    """Non-browser clients send no Origin and no cookie: nothing changes for them."""
    await registry.user("alice", "correct horse")
    token = (await password_login(client, client_id=spa)).json()["refresh_token"]
    response = await client.post(
        "/refresh",
        data={"client_id": spa, "refresh_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 200, response.text


# --- login CSRF: a foreign page must not log the browser into the attacker's account --------


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
async def test_a_cookie_client_logs_in_only_from_an_allowed_origin(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine, origin: str | None
) -> None:
    response = await browser_login(client, origin)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "invalid_request"
    assert "set-cookie" not in response.headers
    async with engine.connect() as conn:
        families = (await conn.execute(text("SELECT COUNT(*) FROM refresh_families"))).scalar()
    assert families == 0


async def test_a_foreign_page_cannot_plant_a_session_through_a_body_token(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine
) -> None:
    attackers = await log_in(client)
    response = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "browser",
            "refresh_token": attackers.value,
        },
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert await spent_at(engine, attackers.value) is None


# --- logout ---------------------------------------------------------------------------------


async def test_logout_with_the_cookie_revokes_the_family_and_clears_the_cookie(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine
) -> None:
    cookie = await log_in(client)
    response = await client.post("/logout", headers=sent(cookie.value))
    assert response.status_code == 204, response.text
    cleared = the_cookie(response)
    assert cleared.name == SECURE and cleared.value == ""
    assert cleared.attributes == ["Path=/", "Max-Age=0", "HttpOnly", "Secure", "SameSite=Strict"]
    assert await family_revoked_at(engine, cookie.value) is not None
    after = await refresh_with_cookie(client, "/refresh", sent(cookie.value))
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


async def test_logout_from_a_foreign_origin_revokes_nothing(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine
) -> None:
    cookie = await log_in(client)
    for origin in (None, "https://evil.example"):
        response = await client.post("/logout", headers=sent(cookie.value, origin))
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "invalid_request"
        assert "set-cookie" not in response.headers
    assert await family_revoked_at(engine, cookie.value) is None


async def test_logout_with_a_dead_cookie_still_answers_204_and_clears_it(
    client: httpx.AsyncClient, browser: str
) -> None:
    response = await client.post("/logout", headers=sent("not-a-token"))
    assert response.status_code == 204
    assert the_cookie(response).max_age == 0


async def test_logout_still_accepts_the_token_in_the_body(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine
) -> None:
    cookie = await log_in(client)
    response = await client.post("/logout", data={"refresh_token": cookie.value})
    assert response.status_code == 204
    assert await family_revoked_at(engine, cookie.value) is not None
    # No cookie came, so none is cleared: a foreign page cannot clear the SPA's cookie either.
    assert "set-cookie" not in response.headers


# --- plain-http development -----------------------------------------------------------------


class TestInsecureCookie:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {"allowed_origins": "http://localhost:5173", "cookie_secure": "false"}

    async def test_the_cookie_drops_secure_and_the_host_prefix(
        self, client: httpx.AsyncClient, browser: str, clock: Clock
    ) -> None:
        cookie = await log_in(client, "http://localhost:5173")
        assert cookie.name == "authserver_rt"
        assert cookie.attributes == [
            "Path=/",
            f"Max-Age={SESSION_TTL}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        headers = sent(cookie.value, "http://localhost:5173", name="authserver_rt")
        response = await refresh_with_cookie(client, "/refresh", headers)
        assert response.status_code == 200, response.text
        assert the_cookie(response).name == "authserver_rt"
        logout = await client.post("/logout", headers=headers)
        assert logout.status_code == 204
        assert the_cookie(logout).attributes[1] == "Max-Age=0"

    async def test_the_secure_name_is_not_read(
        self, client: httpx.AsyncClient, browser: str
    ) -> None:
        cookie = await log_in(client, "http://localhost:5173")
        headers = sent(cookie.value, "http://localhost:5173", name=SECURE)
        response = await refresh_with_cookie(client, "/refresh", headers)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/refresh", "/token", "/logout"])
async def test_a_cookie_and_a_different_body_token_are_refused_and_change_nothing(
    client: httpx.AsyncClient, browser: str, engine: AsyncEngine, path: str
) -> None:
    """Two tokens in one request: picking either would let whoever planted the other choose
    which session is rotated or ended. API.md: 400 invalid_request, and nothing happens."""
    mine = (await log_in(client)).value
    other = (await log_in(client)).value
    data = {"client_id": browser, "refresh_token": other}
    if path == "/token":
        data["grant_type"] = "refresh_token"
    response = await client.post(path, data=data, headers=sent(mine))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    for token in (mine, other):
        assert await spent_at(engine, token) is None
        assert await family_revoked_at(engine, token) is None
