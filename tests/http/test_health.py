"""GET /healthz and GET /readyz.

To take the database away from a running server honestly, the Postgres case puts a TCP proxy
of our own between the app and the real database and then closes it: the server sees exactly
what it sees when the database host goes away (connections reset, new ones refused). SQLite is
embedded: a file the process already has open cannot become unreachable in a way `SELECT 1`
would notice, so that case is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests._proxy import FaultyProxy, app_through_proxy


async def test_healthz_answers_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_readyz_answers_200_with_database_and_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


@pytest.fixture
async def proxied(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, FaultyProxy]]:
    async with app_through_proxy(database_url, tmp_path / "keys") as (_, http, proxy):
        yield http, proxy


async def test_readyz_answers_503_while_the_database_is_unreachable(
    proxied: tuple[httpx.AsyncClient, FaultyProxy],
) -> None:
    client, proxy = proxied
    assert (await client.get("/readyz")).status_code == 200

    await proxy.cut()
    down = await client.get("/readyz")
    alive = await client.get("/healthz")

    assert down.status_code == 503
    assert down.headers["content-type"].startswith("application/json")
    assert down.headers["cache-control"] == "no-store"
    body = down.json()
    assert body["error"] == "temporarily_unavailable"
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert "127.0.0.1" not in down.text and "postgres" not in down.text.lower()
    assert alive.status_code == 200  # the process itself is fine

    await proxy.restore()
    assert (await client.get("/readyz")).status_code == 200
