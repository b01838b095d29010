"""A client's own browser origins (`allowed_origins`, API.md "Clients, added"): answered by CORS
beside AUTHSERVER_ALLOWED_ORIGINS, let use the cookie endpoints of that client only, and
effective at once, on this instance and on another one (Postgres NOTIFY), with no restart.
The app's clock stands still, so no memory ends by itself: only the change can be seen."""

from __future__ import annotations

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.config import Settings
from tests._refresh_rows import family_revoked_at, spent_at
from tests.conftest import Clock, Registry
from tests.http.test_admin_lifecycle import another_instance, root
from tests.http.test_cookies import SECURE, browser_login, sent
from tests.http.test_cors import preflight_headers, varies_on_origin

__all__ = ["root"]  # a fixture, imported for its use here

SETTINGS_ORIGIN = "https://app.example"
SHOP = "https://shop.example"
BLOG = "https://blog.example"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"allowed_origins": SETTINGS_ORIGIN}


async def cookie_client(registry: Registry, client_id: str, origins: tuple[str, ...]) -> None:
    await registry.client(
        client_id,
        public=True,
        grant_types=("password", "refresh_token"),
        refresh_delivery="cookie",
        allowed_origins=origins,
    )


async def cookie_login(client: httpx.AsyncClient, client_id: str, origin: str) -> httpx.Response:
    response = await browser_login(client, origin, client_id)
    client.cookies.clear()  # each test sends the cookie it means to, by hand
    return response


def refresh_cookie(response: httpx.Response) -> str:
    (header,) = response.headers.get_list("set-cookie")
    name, _, rest = header.partition("=")
    assert name == SECURE
    return rest.split(";", 1)[0]


async def preflight(http: httpx.AsyncClient, origin: str, path: str = "/refresh") -> int:
    response = await http.options(path, headers=preflight_headers(origin))
    if response.status_code == 200:
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
    else:
        assert "access-control-allow-origin" not in response.headers
    assert varies_on_origin(response)
    return response.status_code


async def test_a_clients_origin_is_answered_by_cors_by_name_with_credentials(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await cookie_client(registry, "shop", (SHOP,))
    assert await preflight(client, SHOP) == 200
    assert await preflight(client, SETTINGS_ORIGIN) == 200  # the settings' still
    assert await preflight(client, BLOG) == 400
    response = await client.get("/userinfo", headers={"Origin": SHOP})
    assert response.headers["access-control-allow-origin"] == SHOP


async def test_a_disabled_or_deleted_clients_origins_are_no_longer_answered(
    client: httpx.AsyncClient, registry: Registry, root: dict[str, str]
) -> None:
    await cookie_client(registry, "shop", (SHOP,))
    await cookie_client(registry, "blog", (BLOG,))
    assert await preflight(client, SHOP) == 200 and await preflight(client, BLOG) == 200
    patched = await client.patch("/admin/clients/shop", json={"disabled": True}, headers=root)
    assert patched.status_code == 200, patched.text
    assert (await client.delete("/admin/clients/blog", headers=root)).status_code == 204
    assert await preflight(client, SHOP) == 400
    assert await preflight(client, BLOG) == 400


async def test_a_clients_origin_may_use_its_cookie_endpoints_and_no_other_clients(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("alice", "correct horse")
    await cookie_client(registry, "shop", (SHOP,))
    await cookie_client(registry, "blog", (BLOG,))

    # The login (login CSRF) and the refresh from the client's own origin.
    shop_login = await cookie_login(client, "shop", SHOP)
    assert shop_login.status_code == 200, shop_login.text
    assert shop_login.headers["access-control-allow-origin"] == SHOP
    cookie = refresh_cookie(shop_login)
    refreshed = await client.post(
        "/refresh", data={"client_id": "shop"}, headers=sent(cookie, SHOP)
    )
    assert refreshed.status_code == 200, refreshed.text
    cookie = refresh_cookie(refreshed)

    # Another client's origin can neither log in to this client nor use its cookie, even
    # naming its own client: a page allowed for blog cannot rotate or end shop's sessions.
    refused = await cookie_login(client, "shop", BLOG)
    assert refused.status_code == 403 and refused.json()["error"] == "invalid_request"
    for client_id in ("shop", "blog"):
        response = await client.post(
            "/refresh", data={"client_id": client_id}, headers=sent(cookie, BLOG)
        )
        assert response.status_code == 403, response.text
    ended = await client.post("/logout", headers=sent(cookie, BLOG))
    assert ended.status_code == 403, ended.text
    assert await spent_at(engine, cookie) is None
    assert await family_revoked_at(engine, cookie) is None

    # The settings' origin serves every client; the client's own origin logs it out.
    assert (
        await client.post("/refresh", data={"client_id": "shop"}, headers=sent(cookie))
    ).status_code == 200
    blog_login = await cookie_login(client, "blog", BLOG)
    assert blog_login.status_code == 200, blog_login.text
    assert (
        await client.post("/logout", headers=sent(refresh_cookie(blog_login), BLOG))
    ).status_code == 204


async def test_a_changed_origin_counts_at_once_on_this_instance(
    client: httpx.AsyncClient, registry: Registry, root: dict[str, str]
) -> None:
    await registry.user("alice", "correct horse")
    await cookie_client(registry, "shop", (SHOP,))
    assert await preflight(client, SHOP) == 200  # remembered now
    assert (await cookie_login(client, "shop", SHOP)).status_code == 200

    patched = await client.patch(
        "/admin/clients/shop", json={"allowed_origins": [BLOG]}, headers=root
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["allowed_origins"] == [BLOG]
    assert await preflight(client, BLOG) == 200
    assert await preflight(client, SHOP) == 400
    assert (await cookie_login(client, "shop", BLOG)).status_code == 200
    assert (await cookie_login(client, "shop", SHOP)).status_code == 403


async def test_a_changed_origin_counts_at_once_on_another_instance(
    client: httpx.AsyncClient,
    registry: Registry,
    root: dict[str, str],
    settings: Settings,
    clock: Clock,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("instances hear of changes through Postgres NOTIFY; SQLite has one process")
    await registry.user("alice", "correct horse")
    await cookie_client(registry, "shop", (SHOP,))
    async with another_instance(settings, clock) as other:
        # The other instance has read the clients' origins and remembers them (its clock
        # stands still: the memory never ends by itself).
        assert await preflight(other, SHOP) == 200
        assert await preflight(other, BLOG) == 400
        assert (await cookie_login(other, "shop", SHOP)).status_code == 200

        patched = await client.patch(
            "/admin/clients/shop", json={"allowed_origins": [BLOG]}, headers=root
        )
        assert patched.status_code == 200, patched.text

        # Heard through NOTIFY: no restart, no waiting out a memory. Delivery is
        # asynchronous, so the test asks for a second at most, as test_notify does.
        for _ in range(100):
            if await preflight(other, BLOG) == 200:
                break
            await anyio.sleep(0.01)
        assert await preflight(other, BLOG) == 200
        assert await preflight(other, SHOP) == 400
        assert (await cookie_login(other, "shop", BLOG)).status_code == 200
        assert (await cookie_login(other, "shop", SHOP)).status_code == 403


# --- the public documents: any origin, no credentials -------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ],
)
@pytest.mark.parametrize("origin", [None, BLOG, "null", SETTINGS_ORIGIN])
async def test_the_public_documents_answer_cors_for_any_origin(
    client: httpx.AsyncClient, path: str, origin: str | None
) -> None:
    response = await client.get(path, headers={} if origin is None else {"Origin": origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    # The same answer for every origin: a cache may share it.
    assert not varies_on_origin(response)

    # The MCP SDKs send MCP-Protocol-Version with their discovery requests.
    for header in ("if-none-match", "mcp-protocol-version"):
        asked = await client.options(path, headers=preflight_headers(BLOG, "GET", header))
        assert asked.status_code == 204
        assert asked.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in asked.headers
        assert header in asked.headers["access-control-allow-headers"].lower()
