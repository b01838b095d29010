"""Bad input to the browser sign-in's endpoints is a clear 4xx (or the contract's HTML error
page), never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Registry
from tests.http.signin import INSECURE_COOKIES, WEB, web_client


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


CB = "redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
PKCE = "code_challenge=" + "a" * 43 + "&code_challenge_method=S256&response_type=code"


@pytest.mark.parametrize(
    ("method", "url", "body", "content_type"),
    [
        ("GET", "/authorize", None, None),
        ("GET", "/authorize?client_id=%00", None, None),
        ("GET", "/authorize?client_id=" + "x" * 300, None, None),
        ("GET", f"/authorize?client_id=web&{CB}&{PKCE}&nonce=%00", None, None),
        ("GET", f"/authorize?client_id=web&{CB}&{PKCE}&max_age=99999999999999999999", None, None),
        ("GET", f"/authorize?client_id=web&{CB}&{PKCE}&scope=%22", None, None),
        ("GET", f"/authorize?client_id=web&{CB}&{PKCE}&state=%ED%A0%80", None, None),
        ("GET", f"/authorize?client_id=web&{CB}&{PKCE}&prompt=none%20login", None, None),
        ("GET", "/login?client_id=web&client_id=other", None, None),
        ("GET", "/login?%ff=%ff", None, None),
        ("POST", "/login", b'{"username": 1}', "application/json"),
        ("POST", "/login", b"<xml/>", "text/xml"),
        ("POST", "/login", b"csrf_token=%00&username=a&password=b",
         "application/x-www-form-urlencoded"),
        ("POST", f"/login?client_id=web&{CB}&{PKCE}", b"", "application/x-www-form-urlencoded"),
        ("GET", "/userinfo", None, None),
        ("POST", "/userinfo", b"access_token=x", "application/x-www-form-urlencoded"),
        ("GET", "/end-session?id_token_hint=a.b.c&post_logout_redirect_uri=x", None, None),
        ("GET", "/end-session?id_token_hint=%00", None, None),
        ("GET", "/end-session?state=1&state=2", None, None),
        ("POST", "/end-session", b"[1]", "application/json"),
        ("POST", "/token", b"grant_type=authorization_code&client_id=web&code=" + b"c" * 9000,
         "application/x-www-form-urlencoded"),
        ("POST", "/token", b"grant_type=authorization_code&client_id=web&code=%00&code_verifier=x",
         "application/x-www-form-urlencoded"),
        ("POST", "/token", b"grant_type=authorization_code&client_id=web",
         "application/x-www-form-urlencoded"),
    ],
)  # fmt: skip
async def test_hostile_input_is_never_a_500(
    client: httpx.AsyncClient,
    registry: Registry,
    method: str,
    url: str,
    body: bytes | None,
    content_type: str | None,
) -> None:
    await web_client(registry)
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.request(method, url, content=body, headers=headers)
    assert 400 <= response.status_code < 500 or response.status_code in (200, 302), (
        response.status_code,
        response.text[:300],
    )
    assert WEB  # the registered client the URLs name
