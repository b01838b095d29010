"""The pages a person sees (/authorize, /login, /end-session) answer their errors as pages.

A browser shows a JSON body as raw text, so a database outage (503), a body too large (413),
a wrong media type (415), a malformed form (400) or a bug (500) there is the error page, with
the same status and the hosted pages' strict headers. The API endpoints keep their JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from authserver.http.errors import BROKEN, TOO_LARGE, UNAVAILABLE
from tests._proxy import FaultyProxy, app_through_proxy
from tests.conftest import ISSUER, Registry
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    assert_strict_headers,
    authorize,
    csrf_token,
    web_client,
)

TOO_BIG = {"username": "alice", "password": "x" * 17_000}


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


def assert_page(response: httpx.Response, status: int, sentence: str) -> None:
    assert response.status_code == status, response.text
    assert_strict_headers(response)
    assert sentence in response.text
    assert "error_description" not in response.text


def assert_json(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


async def login_url(client: httpx.AsyncClient) -> str:
    location: str = (await authorize(client, Flow.new(WEB).params)).headers["location"]
    assert location.startswith(f"{ISSUER}/login?")
    return location


async def test_a_body_too_large_is_a_page_there_and_json_elsewhere(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry)
    url = await login_url(client)
    page = await client.get(url)
    fields = {**TOO_BIG, "csrf_token": csrf_token(page.text)}

    assert_page(await client.post(url, data=fields), 413, TOO_LARGE)
    assert_page(await client.post("/end-session", data=fields), 413, TOO_LARGE)
    assert_json(await client.post("/token", data=fields), 413)
    assert_json(await client.post("/logout", data=fields), 413)


async def test_a_malformed_body_is_a_page_there_and_json_elsewhere(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry)
    url = await login_url(client)
    xml = {"content": b"<xml/>", "headers": {"Content-Type": "text/xml"}}
    not_an_object = {"content": b"[1]", "headers": {"Content-Type": "application/json"}}

    assert_page(await client.post(url, **xml), 415, "application/x-www-form-urlencoded")  # type: ignore[arg-type]
    assert_page(await client.post("/end-session", **xml), 415, "application/json")  # type: ignore[arg-type]
    assert_page(await client.post("/end-session", **not_an_object), 400, "must be an object")  # type: ignore[arg-type]
    repeated = await client.get("/end-session?state=1&state=2")
    assert_page(repeated, 400, "The parameter state is repeated.")
    assert_json(await client.post("/token", **xml), 415)  # type: ignore[arg-type]


async def test_a_bug_on_a_page_is_a_page(app: Starlette, client: httpx.AsyncClient) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    # Ahead of the real /login, so this one answers it.
    app.router.routes.insert(0, Route("/login", broken, methods=["GET"]))
    app.router.routes.append(Route("/broken", broken))

    assert_page(await client.get("/login"), 500, BROKEN)
    assert_json(await client.get("/broken"), 500)


@pytest.fixture
async def outage(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, FaultyProxy, str]]:
    """A server whose Postgres can be taken away, with a web client and a sign-in page open
    (its CSRF cookie set); skipped on SQLite."""
    async with app_through_proxy(database_url, tmp_path / "keys", **INSECURE_COOKIES) as found:
        app, http, proxy = found
        registry = Registry(app.state.services)
        await web_client(registry)
        await registry.user("alice", "correct horse")
        url = await login_url(http)
        assert (await http.get(url)).status_code == 200
        yield http, proxy, url


async def test_a_database_outage_is_a_page_there_and_json_elsewhere(
    outage: tuple[httpx.AsyncClient, FaultyProxy, str],
) -> None:
    http, proxy, url = outage
    # Before the page: its CSRF token is bound to the browser's login-session cookie.
    http.cookies.set("authserver_session", "a session the database must look up")
    page = await http.get(url)
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": "x"}
    await proxy.cut()

    answers = {
        "authorize": await authorize(http, Flow.new(WEB).params),
        "login page": await http.get("/login?client_id=not-in-memory&response_type=code"),
        "login": await http.post(url, data=form),
        "end-session": await http.get("/end-session", params={"client_id": WEB}),
        "end-session (post)": await http.post("/end-session", data={"client_id": WEB}),
    }
    token = await http.post("/token", data={**form, "grant_type": "password", "client_id": WEB})

    for name, response in answers.items():
        assert_page(response, 503, UNAVAILABLE)
        assert "postgres" not in response.text.lower(), name
        assert "127.0.0.1" not in response.text, name
    assert_json(token, 503)
    assert token.json()["error"] == "temporarily_unavailable"

    await proxy.restore()
    assert (await authorize(http, Flow.new(WEB).params)).status_code == 302
