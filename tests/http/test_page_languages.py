"""The hosted pages speak the user's language (API.md "Languages."): the authorization
request's ui_locales, then Accept-Language, then English; `lang` on <html>, Content-Language
and Vary on the answer; a deployment's catalogs add a language. And the pages' icon."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.http.sign_in import WRONG_CREDENTIALS
from tests.conftest import ISSUER, Registry, make_settings
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    assert_strict_headers,
    authorize,
    browser_of,
    csrf_token,
    form_action,
    sign_in,
    web_client,
    write_catalog,
)

GERMAN_BROWSER = {"Accept-Language": "de-DE,de;q=0.9"}
ENGLISH_BROWSER = {"Accept-Language": "en-US,en;q=0.9"}


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    await web_client(registry)
    return await registry.user("alice", "correct horse")


async def _login_url(client: httpx.AsyncClient, **extra: str) -> str:
    location: str = (await authorize(client, Flow.new(WEB, **extra).params)).headers["location"]
    assert location.startswith(f"{ISSUER}/login?")
    return location


def assert_language(response: httpx.Response, language: str) -> None:
    assert f'<html lang="{language}">' in response.text
    assert response.headers["content-language"] == language
    assert "accept-language" in response.headers["vary"].lower()
    assert_strict_headers(response)


async def test_a_german_browser_gets_german_pages(client: httpx.AsyncClient, alice: str) -> None:
    client.headers.update(GERMAN_BROWSER)
    page = await client.get(await _login_url(client))
    assert page.status_code == 200
    assert_language(page, "de")
    assert "<title>Bei web anmelden</title>" in page.text
    assert '<label for="username">Benutzername</label>' in page.text
    assert '<button type="submit">Anmelden</button>' in page.text

    wrong = await sign_in(client, await _login_url(client), password="wrong horse")
    assert wrong.status_code == 400
    assert_language(wrong, "de")
    assert "Der Benutzername oder das Passwort ist falsch." in wrong.text

    error = await authorize(client, Flow.new("nobody").params)  # an unknown client
    assert error.status_code == 400
    assert_language(error, "de")
    assert "Wir konnten nicht fortfahren" in error.text
    assert "Die Anwendung ist nicht registriert." in error.text


async def test_a_person_reads_the_sign_in_error_not_the_grants(
    client: httpx.AsyncClient, alice: str
) -> None:
    """The page keeps the password grant's rule (one sentence for an unknown user and a wrong
    password) in a person's words: nothing about refresh tokens."""
    for username, password in [("alice", "wrong horse"), ("nobody", "correct horse")]:
        response = await sign_in(client, await _login_url(client), username, password)
        assert response.status_code == 400
        assert_language(response, "en")
        assert WRONG_CREDENTIALS == "The username or password is wrong."
        assert WRONG_CREDENTIALS in response.text
        assert "refresh token" not in response.text


async def test_ui_locales_wins_over_accept_language(client: httpx.AsyncClient, alice: str) -> None:
    client.headers.update(ENGLISH_BROWSER)
    login_url = await _login_url(client, ui_locales="fr-CA de")
    page = await client.get(login_url)
    assert_language(page, "de")
    # The form posts back to the same query string: the answer speaks German too.
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": "wrong"}
    wrong = await client.post(form_action(page.text), data=form)
    assert wrong.status_code == 400
    assert_language(wrong, "de")
    assert "Der Benutzername oder das Passwort ist falsch." in wrong.text
    # Without it, the same browser gets English.
    assert_language(await client.get(await _login_url(client)), "en")


async def test_an_unknown_language_falls_back_to_english(
    client: httpx.AsyncClient, alice: str
) -> None:
    client.headers.update({"Accept-Language": "tlh, x-klingon;q=0.9"})
    page = await client.get(await _login_url(client, ui_locales="sjn qya"))
    assert page.status_code == 200
    assert_language(page, "en")
    assert '<label for="username">Username</label>' in page.text


@pytest.mark.parametrize(
    "accept_language",
    [
        ", ".join(["de-DE;q=0.9"] * 1000).encode(),  # 12 KB
        b"a" * 10_000,
        b"de;q=NaN, en;q=-1, fr;q=1e9, ;;;q=, *;q=0.5",
        b"<script>alert(1)</script>;q=1",
        b"\x7f\xff de",  # not ASCII: Starlette reads it as Latin-1
    ],
)
async def test_hostile_accept_language_is_never_a_500(
    client: httpx.AsyncClient, alice: str, accept_language: bytes
) -> None:
    headers = {b"Accept-Language": accept_language}
    login_url = await _login_url(client)
    page = await client.get(login_url, headers=headers)
    assert page.status_code == 200
    assert page.headers["content-language"] in {"en", "de"}
    assert "<script>alert" not in page.text
    error = await client.get("/authorize", params=Flow.new("nobody").params, headers=headers)
    assert error.status_code == 400 and "<script>alert" not in error.text


@pytest.mark.parametrize(
    "ui_locales",
    ['"><script>alert(1)</script>', "de<img src=x onerror=alert(1)>", "x" * 10_000, "de\u202e"],
)
async def test_hostile_ui_locales_is_never_a_500_nor_reflected(
    client: httpx.AsyncClient, alice: str, ui_locales: str
) -> None:
    page = await client.get(await _login_url(client, ui_locales=ui_locales))
    assert page.status_code == 200
    assert_language(page, "en")
    assert "<script>alert" not in page.text and "<img" not in page.text
    assert "onerror=alert" not in page.text.replace("onerror%3Dalert", "")
    error = await authorize(client, Flow.new("nobody", ui_locales=ui_locales).params)
    assert error.status_code == 400
    assert "<script>alert" not in error.text and "<img" not in error.text


async def test_a_deployments_catalog_adds_a_language(
    database_url: str, tmp_path: Path, engine: AsyncEngine, registry: Registry
) -> None:
    """AUTHSERVER_TEMPLATES_DIR/locale/<lang>/LC_MESSAGES/messages.po: a new language (French
    here), or single sentences of a built-in one replaced (German)."""
    folder = tmp_path / "look"
    write_catalog(folder, "fr", {"Sign in": "Se connecter", "Username": "Identifiant"})
    write_catalog(folder, "de", {"Username": "Anmeldename"})
    settings = make_settings(
        database_url, tmp_path / "keys", templates_dir=str(folder), **INSECURE_COOKIES
    )
    await web_client(registry)
    async with browser_of(settings) as browser:
        login_url = await _login_url(browser)
        french = await browser.get(login_url, headers={"Accept-Language": "fr-FR, de"})
        german = await browser.get(login_url, headers=GERMAN_BROWSER)
    assert_language(french, "fr")
    assert '<label for="username">Identifiant</label>' in french.text
    assert '<button type="submit">Se connecter</button>' in french.text
    assert '<label for="password">Password</label>' in french.text  # not translated: English
    assert_language(german, "de")
    assert '<label for="username">Anmeldename</label>' in german.text
    assert '<label for="password">Passwort</label>' in german.text  # the built-in catalog's


async def test_the_pages_have_an_icon_their_policy_allows(
    client: httpx.AsyncClient, alice: str
) -> None:
    page = await client.get(await _login_url(client))
    assert '<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">' in page.text
    assert "img-src 'self'" in page.headers["content-security-policy"]
    for path in ("/assets/favicon.svg", "/favicon.ico"):
        icon = await client.get(path)
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/svg+xml"
        assert icon.text.startswith("<svg") and "<script" not in icon.text


async def test_end_session_speaks_the_ui_locales_of_its_query_or_its_form(
    client: httpx.AsyncClient, alice: str
) -> None:
    """RP-Initiated Logout 1.0 §2 takes ui_locales too; a POSTed request carries it in the form."""
    await sign_in(client, await _login_url(client))
    asked = await client.get("/end-session", params={"client_id": WEB, "ui_locales": "de"})
    assert asked.status_code == 200
    assert_language(asked, "de")
    assert '<h1 id="heading">Abmelden?</h1>' in asked.text
    # From another site: no cookie comes along, and our page posts it again, in German.
    client.cookies.clear()
    posted = await client.post("/end-session", data={"client_id": WEB, "ui_locales": "de"})
    assert posted.status_code == 200
    assert_language(posted, "de")
    assert '<h1 id="heading">Abmeldung</h1>' in posted.text
