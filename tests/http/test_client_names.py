"""A client's name and origins in the admin API (API.md, "Clients, added"): registered, shown,
changed and removed; hostile values refused with 400 invalid_request, never a 500; the name
on the sign-in page instead of the id, escaped."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ISSUER, Registry, assert_oauth_error
from tests.http.signin import INSECURE_COOKIES, WEB, Flow, authorize, web_client
from tests.http.test_admin_lifecycle import root
from tests.http.test_end_session import BYE, signed_in

__all__ = ["root"]  # a fixture, imported for its use here

SHOP = "https://shop.example"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def test_a_client_is_registered_shown_and_changed_with_its_name_and_origins(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    created = await client.post(
        "/admin/clients",
        json={
            "client_id": "shop",
            "public": True,
            "client_name": "The Shop",
            "allowed_origins": [SHOP, "http://localhost:5173", SHOP],
        },
        headers=root,
    )
    assert created.status_code == 201, created.text
    assert created.json()["client_name"] == "The Shop"
    assert created.json()["allowed_origins"] == [SHOP, "http://localhost:5173"]

    shown = (await client.get("/admin/clients/shop", headers=root)).json()
    assert shown["client_name"] == "The Shop"
    assert shown["allowed_origins"] == [SHOP, "http://localhost:5173"]
    listed = (await client.get("/admin/clients", headers=root)).json()["clients"]
    assert {c["client_id"]: c["client_name"] for c in listed}["shop"] == "The Shop"

    renamed = await client.patch(
        "/admin/clients/shop",
        json={"client_name": "Shop «Ünïcode» 店", "allowed_origins": ["https://[::1]:8443"]},
        headers=root,
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["client_name"] == "Shop «Ünïcode» 店"
    assert renamed.json()["allowed_origins"] == ["https://[::1]:8443"]
    # Other fields leave them alone; null (or "") removes the name, [] the origins.
    untouched = await client.patch("/admin/clients/shop", json={"scopes": []}, headers=root)
    assert untouched.json()["client_name"] == "Shop «Ünïcode» 店"
    cleared = await client.patch(
        "/admin/clients/shop", json={"client_name": None, "allowed_origins": []}, headers=root
    )
    assert cleared.json()["client_name"] is None and cleared.json()["allowed_origins"] == []
    assert (await client.get("/admin/clients/shop", headers=root)).json()["client_name"] is None


HOSTILE: dict[str, dict[str, Any]] = {
    "name not a string": {"client_name": 42},
    "name a list": {"client_name": ["a"]},
    "name with a newline": {"client_name": "Shop\nSecond line"},
    "name with a control character": {"client_name": "Shop\x1b[31m"},
    "name with a NUL": {"client_name": "Shop\x00"},
    "name of 10 KB": {"client_name": "x" * 10_240},
    "name of spaces": {"client_name": "   "},
    "origins not a list": {"allowed_origins": SHOP},
    "origins null": {"allowed_origins": None},
    "origins a number": {"allowed_origins": [1]},
    "origin null": {"allowed_origins": ["null"]},
    "origin with a path": {"allowed_origins": ["https://shop.example/app"]},
    "origin with a slash": {"allowed_origins": ["https://shop.example/"]},
    "origin with a query": {"allowed_origins": ["https://shop.example?x=1"]},
    "origin with a fragment": {"allowed_origins": ["https://shop.example#x"]},
    "origin with user information": {"allowed_origins": ["https://me@shop.example"]},
    "origin in http": {"allowed_origins": ["http://shop.example"]},
    "origin in another scheme": {"allowed_origins": ["ftp://shop.example"]},
    "origin in capitals": {"allowed_origins": ["https://Shop.example"]},
    "origin with the default port": {"allowed_origins": ["https://shop.example:443"]},
    "origin with a bad port": {"allowed_origins": ["https://shop.example:99999"]},
    "origin wildcard": {"allowed_origins": ["*"]},
    "origin with spaces": {"allowed_origins": ["https://a.example https://b.example"]},
    "origin empty": {"allowed_origins": [""]},
    "origin of 10 KB": {"allowed_origins": ["https://" + "a" * 10_240 + ".example"]},
    "too many origins": {"allowed_origins": [f"https://a{n}.example" for n in range(65)]},
}


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_names_and_origins_are_refused_at_registration_and_change(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, case: str
) -> None:
    await registry.client("kept", public=True, client_name="Kept", allowed_origins=(SHOP,))
    body = HOSTILE[case]
    created = await client.post("/admin/clients", json={"client_id": "new", **body}, headers=root)
    assert_oauth_error(created, 400, "invalid_request")
    assert (await client.get("/admin/clients/new", headers=root)).status_code == 404

    changed = await client.patch("/admin/clients/kept", json=body, headers=root)
    assert_oauth_error(changed, 400, "invalid_request")
    kept = (await client.get("/admin/clients/kept", headers=root)).json()
    assert kept["client_name"] == "Kept" and kept["allowed_origins"] == [SHOP]


async def login_page(client: httpx.AsyncClient) -> httpx.Response:
    response = await authorize(client, Flow.new(WEB).params)
    location: str = response.headers["location"]
    assert location.startswith(f"{ISSUER}/login?")
    page = await client.get(location)
    assert page.status_code == 200
    return page


async def test_the_sign_in_page_names_the_client_not_its_id(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry, client_name="Example Web App")
    html = (await login_page(client)).text
    assert "to continue to <strong>Example Web App</strong>" in html
    assert "<title>Sign in to Example Web App" in html
    assert f"<strong>{WEB}</strong>" not in html


async def test_without_a_name_the_page_shows_the_id(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry)
    assert f"to continue to <strong>{WEB}</strong>" in (await login_page(client)).text


async def test_the_name_is_escaped_on_the_page(
    client: httpx.AsyncClient, registry: Registry, root: dict[str, str]
) -> None:
    await web_client(registry)
    hostile = "<script>alert(1)</script>\"'&<img src=x onerror=alert(1)>"
    patched = await client.patch(
        f"/admin/clients/{WEB}", json={"client_name": hostile}, headers=root
    )
    assert patched.status_code == 200, patched.text
    html = (await login_page(client)).text
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_the_sign_out_question_names_the_client_it_goes_back_to_escaped(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user("alice", "correct horse")
    name = "Web <b>App</b>"
    await web_client(registry, client_name=name, post_logout_redirect_uris=(BYE,))
    await signed_in(client)

    asked = {"client_id": WEB, "post_logout_redirect_uri": BYE}
    page = await client.get("/end-session", params=asked)
    assert "Sign out?" in page.text
    assert "and go back to Web &lt;b&gt;App&lt;/b&gt;." in page.text
    # A bare client_id proves nothing: no name for it, nor its id.
    bare = await client.get("/end-session", params={"client_id": WEB})
    assert "Web &lt;b&gt;" not in bare.text
