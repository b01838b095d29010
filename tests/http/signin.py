"""Helpers of the browser sign-in tests: a browser that signs in, PKCE pairs, an admin token,
the hosted pages' strict headers."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from authserver.app import create_app
from authserver.config import Settings
from tests.conftest import ISSUER, Registry, password_login

WEB = "web"
CALLBACK = "https://app.example/cb"
PASSWORD = "correct horse"
# The login session and CSRF cookies are Secure unless this: httpx keeps the browser's cookies,
# and sends Secure ones over https only.
INSECURE_COOKIES = {"cookie_secure": "false", "allowed_origins": "https://app.example"}


async def admin_headers(http: httpx.AsyncClient, registry: Registry) -> dict[str, str]:
    """Headers of an admin user's bearer token (the spa client must exist)."""
    await registry.user("root", "correct horse", admin=True)
    response = await password_login(http, "root", client_id="spa", scope="admin")
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def last_sign_in(http: httpx.AsyncClient, root: dict[str, str], sub: str) -> int | None:
    """The user's last_login_at, as GET /admin/users/{sub} says it (`root`: admin_headers)."""
    response = await http.get(f"/admin/users/{sub}", headers=root)
    assert response.status_code == 200, response.text
    last: int | None = response.json()["last_login_at"]
    return last


@asynccontextmanager
async def browser_of(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of an app with settings of its own (a templates folder, say), started for it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as browser:
            yield browser


def write_catalog(folder: Path, language: str, messages: dict[str, str]) -> None:
    """A templates folder's gettext catalog of `language` (docs/sign-in.md, "Languages")."""
    path = folder / "locale" / language / "LC_MESSAGES" / "messages.po"
    path.parent.mkdir(parents=True)
    entries = "".join(f'\nmsgid "{id}"\nmsgstr "{text}"\n' for id, text in messages.items())
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n'
    path.write_text(header + entries, encoding="utf-8")


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def query(location: str) -> dict[str, str]:
    values = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in values.values()), location
    return {name: v[0] for name, v in values.items()}


def assert_strict_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["default-src"] == ["'none'"]
    assert "'self'" in directives["form-action"]
    assert directives["frame-ancestors"] == ["'none'"]  # clickjacking
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/html")
    # Not no-referrer: under it Chromium posts the form with `Origin: null`, which the login
    # CSRF check refuses (tests/e2e saw every real sign-in end in that 403).
    assert response.headers["referrer-policy"] == "same-origin"
    assert len(response.headers.get_list("referrer-policy")) == 1
    assert 'name="referrer" content="no-referrer"' not in response.text


# The one script a page may hold: the passkeys' file of ours (no inline script, CSP 'self').
PASSKEY_SCRIPT = '<script src="/assets/passkeys.js" defer></script>'


def without_our_script(html: str) -> str:
    """The page without the passkeys' script tag: what is left holds no script at all."""
    return html.replace(PASSKEY_SCRIPT, "", 1)


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def hidden_fields(html: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    return {name: unescape(value) for name, value in found}


async def sign_out_form(http: httpx.AsyncClient, **params: str) -> dict[str, str]:
    """The fields of the page /end-session asks with (no id_token_hint): posted back to
    /end-session by the same browser, they sign out."""
    page = await http.get("/end-session", params=params)
    assert page.status_code == 200 and "Sign out?" in page.text, page.text
    return hidden_fields(page.text)


def form_action(html: str) -> str:
    found = re.search(r'<form method="post" action="([^"]+)"', html)
    assert found, html
    return found.group(1).replace("&amp;", "&")


@dataclass
class Flow:
    """One authorization request, as a client sends it."""

    verifier: str
    params: dict[str, str]

    @classmethod
    def new(cls, client_id: str = WEB, **extra: str) -> Flow:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": CALLBACK,
            "state": "st-" + secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return cls(verifier, {k: v for k, v in params.items() if v != ""})


async def authorize(http: httpx.AsyncClient, params: dict[str, Any]) -> httpx.Response:
    return await http.get("/authorize", params=params)


async def sign_in(
    http: httpx.AsyncClient, login_url: str, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    """Opens the sign-in page and posts its form, as a browser would."""
    page = await http.get(login_url)
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_token(page.text), "username": username, "password": password}
    return await http.post(form_action(page.text), data=form)


async def code_for(
    http: httpx.AsyncClient,
    flow: Flow,
    username: str = "alice",
    password: str = PASSWORD,
    *,
    consent: bool = False,
) -> str:
    """Runs the browser part: /authorize, the sign-in page if asked, back with a code. A
    third-party client (`consent`) is allowed on the consent page (tests/http/test_consent.py)."""
    response = await authorize(http, flow.params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    if location.startswith(f"{ISSUER}/login"):
        response = await sign_in(http, location, username, password)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
    if consent and location.startswith(f"{ISSUER}/consent"):
        page = await http.get(location)
        assert page.status_code == 200, page.text
        form = {"csrf_token": csrf_token(page.text), "decision": "allow"}
        response = await http.post(form_action(page.text), data=form)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
    answer = query(location)
    assert location.startswith(flow.params.get("redirect_uri", CALLBACK) + "?"), location
    assert answer["state"] == flow.params["state"] and answer["iss"] == ISSUER, answer
    return answer["code"]


async def exchange(
    http: httpx.AsyncClient, code: str, flow: Flow, /, **overrides: str
) -> httpx.Response:
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.params.get("redirect_uri", CALLBACK),
        "code_verifier": flow.verifier,
        "client_id": flow.params["client_id"],
        **overrides,
    }
    return await http.post("/token", data={k: v for k, v in fields.items() if v != ""})


async def web_client(registry: Registry, client_id: str = WEB, **extra: Any) -> str | None:
    options: dict[str, Any] = {
        "public": True,
        "grant_types": ("authorization_code", "refresh_token"),
        "scopes": ("openid", "profile"),
        "redirect_uris": (CALLBACK, "https://app.example/other"),
        **extra,
    }
    return await registry.client(client_id, **options)
