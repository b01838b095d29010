"""Client ID metadata documents (API.md, "Client ID Metadata Documents"): a client_id that is an
https URL names the client's metadata, served here over real https by a throwaway CA's server
(tests/_https_documents.py) that the fetcher trusts through SSL_CERT_FILE. A full code flow and
refresh, caching by the answer's headers, what operators decide surviving a refetch, and every
hostile document or URL answered with a clear refusal, never a 500 and never a fetch of a
private address."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.audit import AuditEvent
from authserver.clients import ClientChanges
from authserver.config import Settings
from authserver.db.purge import purge
from authserver.metadata_documents.documents import (
    MAX_FRESH,
    DocumentRefused,
    audit,
    check_url,
    document_client,
    fresh_until,
)
from authserver.metadata_documents.fetch import MAX_IN_FLIGHT, Fetched, public
from authserver.page_limits import DOCUMENT_FETCHES_LIMIT
from authserver.services import Services
from tests._https_documents import DocumentsServer, documents_server
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    Flow,
    admin_headers,
    code_for,
    exchange,
    sign_in,
)
from tests.http.test_authorize import assert_error_page

OTHER_CALLBACK = "https://app.example/other"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, str]:
    on = {"client_id_metadata": "on", "client_id_metadata_allow_hosts": "localhost"}
    return {**INSECURE_COOKIES, **on, **getattr(request, "param", {})}


NOT_ALLOWED = pytest.mark.parametrize(
    "settings_overrides", [{"client_id_metadata_allow_hosts": ""}], indirect=True
)
OFF = pytest.mark.parametrize("settings_overrides", [{"client_id_metadata": "off"}], indirect=True)


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DocumentsServer]:
    with documents_server(tmp_path) as server:
        # OpenSSL's default verify paths read it at each fetch: the CA this test made.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        yield server


def document(url: str, **members: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Notes CLI",
        "redirect_uris": [CALLBACK],
        # A grant type authserver does not offer such a client is filtered out, not refused.
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid profile",
        "logo_uri": "https://app.example/logo.png",  # not used: ignored
        **members,
    }


async def test_off_by_default_and_discovery_says_when_on(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert Settings().client_id_metadata is False
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["client_id_metadata_document_supported"] is True


@OFF
async def test_off_an_https_client_id_is_an_unknown_client(
    client: httpx.AsyncClient, docs: DocumentsServer
) -> None:
    url = docs.serve("/notes.json", document(docs.url("/notes.json")))
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert "client_id_metadata_document_supported" not in metadata
    response = await client.get("/authorize", params=Flow.new(url).params)
    assert_error_page(response)
    assert "not registered" in response.text
    assert docs.hits["/notes.json"] == 0


async def test_a_document_client_signs_in_with_code_pkce_and_refresh(
    client: httpx.AsyncClient, registry: Registry, services: Services, docs: DocumentsServer
) -> None:
    await registry.user("alice")
    url = docs.serve("/notes.json", document(docs.url("/notes.json")), Cache_Control="max-age=60")
    flow = Flow.new(url, scope="openid profile")
    # Third-party: the consent page asks (code_for allows it there).
    response = await exchange(client, await code_for(client, flow, consent=True), flow)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["scope"] == "openid profile" and tokens["id_token"]
    claims = services.verify(tokens["access_token"])
    assert claims["client_id"] == url
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
              "client_id": url},
    )  # fmt: skip
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    # One fetch served all of it (max-age=60).
    assert docs.hits["/notes.json"] == 1
    # The connection went to the address checked, naming the host in TLS and in Host.
    assert docs.hosts == [f"localhost:{docs.port}"] and docs.server_names == ["localhost"]

    # Operators see it as any client: public, third-party, a "document" registration.
    [stored] = [c for c in await services.clients.page(100, None) if c.client_id == url]
    assert stored.is_public and stored.consent and stored.registration == "document"
    assert stored.grant_types == ("authorization_code", "refresh_token")
    assert stored.client_name == "Notes CLI"
    assert not any(name == "logo_uri" for name, _ in stored.client_metadata)


async def test_the_consent_page_warns_when_every_redirect_uri_is_loopback(
    client: httpx.AsyncClient, registry: Registry, docs: DocumentsServer
) -> None:
    await registry.user("alice")
    loopback = "http://127.0.0.1:53682/callback"
    url = docs.url("/cli.json")
    docs.serve("/cli.json", document(url, redirect_uris=[loopback]))
    flow = Flow.new(url, scope="openid", redirect_uri=loopback)
    response = await client.get("/authorize", params=flow.params)
    signed_in = await sign_in(client, response.headers["location"])
    assert signed_in.headers["location"].startswith(f"{ISSUER}/consent?")
    page = await client.get(signed_in.headers["location"])
    assert page.status_code == 200, page.text
    assert "Notes CLI" in page.text
    assert "loopback address" in page.text


async def test_caching_follows_max_age_and_changed_redirect_uris_take_effect_on_refetch(
    client: httpx.AsyncClient, registry: Registry, docs: DocumentsServer, clock: Clock
) -> None:
    await registry.user("alice")
    url = docs.url("/notes.json")
    docs.serve("/notes.json", document(url), Cache_Control="public, max-age=300")
    await code_for(client, Flow.new(url, scope="openid"), consent=True)
    await code_for(client, Flow.new(url, scope="openid"), consent=True)
    assert docs.hits["/notes.json"] == 1  # fresh for 300 s: not fetched again

    # The document now names another redirect URI: the stored one holds until it is stale...
    docs.serve(
        "/notes.json", document(url, redirect_uris=[OTHER_CALLBACK]), Cache_Control="no-store"
    )
    clock.now += 299
    await code_for(client, Flow.new(url, scope="openid"), consent=True)
    assert docs.hits["/notes.json"] == 1
    # ... and the next fetch (past max-age) replaces it.
    clock.now += 2
    response = await client.get("/authorize", params=Flow.new(url, scope="openid").params)
    assert_error_page(response)
    assert "redirect URI is not registered" in response.text
    assert docs.hits["/notes.json"] == 2
    flow = Flow.new(url, scope="openid", redirect_uri=OTHER_CALLBACK)
    await code_for(client, flow, consent=True)
    # no-store: every use fetches it again.
    assert docs.hits["/notes.json"] == 3


async def test_the_audit_log_says_when_a_document_client_is_stored_and_its_redirect_uris_change(
    client: httpx.AsyncClient, registry: Registry, services: Services, docs: DocumentsServer,
    clock: Clock,
) -> None:  # fmt: skip
    await registry.user("alice")
    url = docs.serve("/notes.json", document(docs.url("/notes.json")), Cache_Control="no-store")
    await code_for(client, Flow.new(url, scope="openid"), consent=True)
    await code_for(client, Flow.new(url, scope="openid"), consent=True)  # refetched, unchanged
    docs.serve("/notes.json", document(url, redirect_uris=[CALLBACK, OTHER_CALLBACK]))
    clock.now += 1
    await code_for(client, Flow.new(url, scope="openid", redirect_uri=OTHER_CALLBACK), consent=True)

    events = [e for e in await services.audit.recent() if e.action.startswith("client.")]
    assert [(e.actor, e.action, e.target) for e in events] == [
        ("client_id_metadata", "client.registered", url),
        ("client_id_metadata", "client.updated", url),
    ]
    assert events[0].detail == {"registration": "document", "redirect_uris": [CALLBACK]}
    assert events[1].detail == {
        "redirect_uris": [CALLBACK, OTHER_CALLBACK],
        "previous_redirect_uris": [CALLBACK],
    }
    assert events[1].at == clock.now


async def test_two_instances_storing_a_new_document_client_at_once_record_it_once(
    services: Services, clock: Clock
) -> None:
    url = "https://notes.example/client.json"
    body = json.dumps(document(url)).encode()
    client = document_client(url, Fetched(body, ()), clock.now)
    # The database settles which one made the row; the other only refreshes it.
    saved = await asyncio.gather(
        *(services.clients.save_document(client, clock.now, partial(audit, now=clock.now))
          for _ in range(4))
    )  # fmt: skip
    assert all(s is not None and s.client_id == url for s in saved)
    events = [e for e in await services.audit.recent() if e.target == url]
    assert [e.action for e in events] == ["client.registered"]


async def test_document_clients_nobody_used_for_the_idle_time_are_purged_in_batches(
    client: httpx.AsyncClient, registry: Registry, services: Services, docs: DocumentsServer,
    engine: AsyncEngine, settings: Settings, clock: Clock,
) -> None:  # fmt: skip
    await registry.user("alice")
    names = ("idle", "abandoned", "used", "disabled")
    urls = {name: docs.url(f"/{name}.json") for name in names}
    for name, url in urls.items():
        docs.serve(f"/{name}.json", document(url), Cache_Control="max-age=60")
    # Allowed on the consent page, its code never redeemed (the purge deletes the code first).
    await code_for(client, Flow.new(urls["idle"], scope="openid"), consent=True)
    assert (await client.get("/authorize", params=Flow.new(urls["abandoned"]).params)).is_redirect
    flow = Flow.new(urls["used"], scope="openid")
    assert (await exchange(client, await code_for(client, flow, consent=True), flow)).is_success
    assert await client.get("/authorize", params=Flow.new(urls["disabled"]).params)
    changes = ClientChanges(disabled=True)
    assert await services.clients.update(urls["disabled"], changes, clock.now, [])
    await registry.client("machine")  # an operator's: never purged

    # Unused since the documents went stale (60 s after the fetch), for the idle time.
    idle_since = clock.now + 60 + settings.registration_idle_purge
    purged = await purge(engine, settings, idle_since - 1, batch=1)
    assert purged is not None and purged.document_clients == 0
    purged = await purge(engine, settings, idle_since + 1, batch=1)
    assert purged is not None and purged.document_clients == 2  # one batch of one at a time
    for name, kept in [("idle", False), ("abandoned", False), ("used", True), ("disabled", True)]:
        assert (await services.clients.fresh(urls[name]) is not None) is kept, name
    assert await services.clients.fresh("machine") is not None

    # Used again, it is fetched again, and the user is asked again (the grant went with it).
    clock.now = idle_since + 2
    response = await client.get("/authorize", params=Flow.new(urls["idle"], scope="openid").params)
    signed_in = await sign_in(client, response.headers["location"])
    assert signed_in.headers["location"].startswith(f"{ISSUER}/consent?")
    assert docs.hits["/idle.json"] == 2


async def test_a_disabled_document_client_stays_disabled_and_a_deleted_one_gone(
    client: httpx.AsyncClient, registry: Registry, services: Services, docs: DocumentsServer,
    clock: Clock, spa: str,
) -> None:  # fmt: skip
    await registry.user("alice")
    url = docs.serve("/notes.json", document(docs.url("/notes.json")), Cache_Control="no-store")
    await code_for(client, Flow.new(url, scope="openid"), consent=True)
    stored = await services.clients.fresh(url)
    assert stored is not None
    # The admin API addresses it by its URL, percent-encoded (slashes too).
    root = await admin_headers(client, registry)
    path = f"/admin/clients/{quote(url, safe='')}"
    shown = await client.get(path, headers=root)
    assert shown.status_code == 200, shown.text
    assert shown.json()["client_id"] == url and shown.json()["registration"] == "document"
    disabled = await client.patch(path, json={"disabled": True}, headers=root)
    assert disabled.status_code == 200, disabled.text
    response = await client.get("/authorize", params=Flow.new(url, scope="openid").params)
    assert_error_page(response)
    assert "not registered" in response.text
    # A fetch racing the operator's change (another instance) leaves it disabled.
    again = await services.clients.save_document(stored, clock.now)
    assert again is not None and again.disabled

    event = AuditEvent(clock.now, "root", "client.deleted", url, {})
    assert await services.clients.delete(url, clock.now, event)
    assert await services.clients.save_document(stored, clock.now) is None
    response = await client.get("/authorize", params=Flow.new(url, scope="openid").params)
    assert_error_page(response)
    assert "not registered" in response.text


# --- hostile ------------------------------------------------------------------------------


def _hostile(docs: DocumentsServer, case: str) -> tuple[str, str]:
    """(client_id, what the error page says) for one hostile case."""
    port = docs.port
    if case == "loopback_ip":
        url = f"https://127.0.0.1:{port}/notes.json"
        docs.serve("/notes.json", document(url))
        return url, "non-public address"
    if case == "metadata_service":
        return "https://169.254.169.254/latest/meta-data", "non-public address"
    if case == "ipv6_loopback":
        return f"https://[::1]:{port}/notes.json", "non-public address"
    if case == "loopback_as_a_number":  # 2130706433 is 127.0.0.1: judged once resolved
        return f"https://2130706433:{port}/notes.json", "non-public address"
    if case == "private_10":
        return "https://10.0.0.1/notes.json", "non-public address"
    if case == "redirect":
        target = docs.serve("/real.json", document(docs.url("/real.json")))
        docs.serve("/moved.json", b"", status=302, Location=target)
        return docs.url("/moved.json"), "redirects are not followed"
    if case == "too_large":
        url = docs.url("/big.json")
        docs.serve("/big.json", document(url, padding="x" * 6000))
        return url, "larger than 5120 bytes"
    if case == "other_client_id":
        docs.serve("/notes.json", document("https://elsewhere.example/notes.json"))
        return docs.url("/notes.json"), "is not its URL"
    if case == "http":
        return f"http://localhost:{port}/notes.json", "must be an https URL"
    if case == "http_remote":
        return "http://app.example/notes.json", "must be an https URL"
    if case == "fragment":
        return docs.url("/notes.json") + "#x", "without a fragment"
    if case == "credentials":
        return f"https://user:pw@localhost:{port}/notes.json", "without user information"
    if case == "dot_segment":
        return docs.url("/a/../notes.json"), "no . or .. segments"
    if case == "not_json":
        docs.serve("/notes.json", b"<html>hello</html>")
        return docs.url("/notes.json"), "is not JSON"
    if case == "not_found":
        return docs.url("/missing.json"), "answered HTTP 404"
    if case == "confidential":
        url = docs.url("/notes.json")
        docs.serve("/notes.json", document(url, token_endpoint_auth_method="client_secret_basic"))
        return url, "must be none"
    if case == "bad_redirect_uri":
        url = docs.url("/notes.json")
        docs.serve("/notes.json", document(url, redirect_uris=["javascript:alert(1)"]))
        return url, "redirect_uris must be"
    if case == "no_supported_grant":
        url = docs.url("/notes.json")
        docs.serve("/notes.json", document(url, grant_types=["client_credentials"]))
        return url, "grant_types must not be empty"
    raise AssertionError(case)


HOSTILE = [
    "loopback_ip", "metadata_service", "ipv6_loopback", "loopback_as_a_number", "private_10",
    "redirect", "too_large", "other_client_id", "http", "http_remote", "fragment", "credentials",
    "dot_segment", "not_json", "not_found", "confidential", "bad_redirect_uri",
    "no_supported_grant",
]  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE)
async def test_a_hostile_document_or_url_is_refused_with_a_clear_reason(
    client: httpx.AsyncClient, docs: DocumentsServer, case: str
) -> None:
    url, reason = _hostile(docs, case)
    response = await client.get("/authorize", params=Flow.new(url, scope="openid").params)
    assert_error_page(response)
    assert reason in response.text.replace("&#39;", "'"), response.text
    # Nothing internal is told: the address a name resolved to, the fetcher's own errors.
    assert "127.0.0.1" not in response.text or "127.0.0.1" in url
    assert "Error" not in response.text
    # At /token too: invalid_client with the same reason, never a 500.
    fields = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": url}
    answer = await client.post("/token", data=fields)
    assert_oauth_error(answer, 401, "invalid_client")
    assert reason in answer.json()["error_description"]
    # The redirect's target was never fetched.
    assert docs.hits["/real.json"] == 0


async def test_a_redirect_uri_not_in_the_document_gets_the_error_page(
    client: httpx.AsyncClient, docs: DocumentsServer
) -> None:
    url = docs.serve("/notes.json", document(docs.url("/notes.json")))
    flow = Flow.new(url, scope="openid", redirect_uri="https://evil.example/cb")
    response = await client.get("/authorize", params=flow.params)
    assert_error_page(response)
    assert "redirect URI is not registered" in response.text


async def test_fetches_at_once_are_bounded_and_fresh_documents_need_none(
    client: httpx.AsyncClient, registry: Registry, docs: DocumentsServer
) -> None:
    await registry.user("alice")
    fresh = docs.serve(
        "/fresh.json", document(docs.url("/fresh.json")), Cache_Control="max-age=600"
    )
    await code_for(client, Flow.new(fresh, scope="openid"), consent=True)
    paths = [f"/slow{n}.json" for n in range(MAX_IN_FLIGHT + 1)]
    for path in paths:
        docs.serve(path, document(docs.url(path)), delay=2)  # all in flight together

    answers: list[httpx.Response] = []
    codes: list[str] = []

    async def slow(path: str) -> None:
        answers.append(await client.get("/authorize", params=Flow.new(docs.url(path)).params))

    async def fresh_meanwhile() -> None:
        await anyio.sleep(0.3)
        codes.append(await code_for(client, Flow.new(fresh, scope="openid"), consent=True))

    async with anyio.create_task_group() as group:
        for path in paths:
            group.start_soon(slow, path)
        group.start_soon(fresh_meanwhile)
    busy = [a for a in answers if "Too many client metadata documents" in a.text]
    assert len(busy) == 1, [a.status_code for a in answers]
    assert_error_page(busy[0])
    assert sum(a.status_code == 302 for a in answers) == MAX_IN_FLIGHT
    assert codes  # a client whose document is fresh was not held up
    assert sum(docs.hits[path] for path in paths) == MAX_IN_FLIGHT


async def test_one_address_group_cannot_make_authserver_fetch_document_after_document(
    client: httpx.AsyncClient, app: Starlette, registry: Registry, docs: DocumentsServer,
    clock: Clock,
) -> None:  # fmt: skip
    await registry.user("alice")
    fresh = docs.serve(
        "/fresh.json", document(docs.url("/fresh.json")), Cache_Control="max-age=900"
    )
    await code_for(client, Flow.new(fresh, scope="openid"), consent=True)  # fetch 1
    budget = DOCUMENT_FETCHES_LIMIT.requests
    urls = [docs.serve(f"/n{n}.json", document(docs.url(f"/n{n}.json"))) for n in range(budget + 2)]
    for url in urls[: budget - 1]:
        assert (await client.get("/authorize", params=Flow.new(url).params)).is_redirect

    # Over the budget: answered as an unknown client would be, and nothing fetched.
    response = await client.get("/authorize", params=Flow.new(urls[budget - 1]).params)
    assert_error_page(response)
    assert "Too many client metadata documents were fetched" in response.text
    token = await client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "x", "code_verifier": "y" * 43,
              "redirect_uri": CALLBACK, "client_id": urls[budget]},
    )  # fmt: skip
    assert_oauth_error(token, 401, "invalid_client")
    assert "try again in" in token.json()["error_description"]
    assert docs.hits[f"/n{budget - 1}.json"] == docs.hits[f"/n{budget}.json"] == 0
    # A client whose document is fresh needs no fetch and goes on.
    await code_for(client, Flow.new(fresh, scope="openid"), consent=True)
    # Another address group has its own budget.
    elsewhere = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url=ISSUER) as other:
        assert (await other.get("/authorize", params=Flow.new(urls[budget + 1]).params)).is_redirect
    # And the window passes.
    clock.now += DOCUMENT_FETCHES_LIMIT.window
    assert (await client.get("/authorize", params=Flow.new(urls[budget - 1]).params)).is_redirect


@NOT_ALLOWED
async def test_a_name_resolving_to_loopback_is_refused_unless_allow_listed(
    client: httpx.AsyncClient, docs: DocumentsServer
) -> None:
    url = docs.serve("/notes.json", document(docs.url("/notes.json")))  # localhost
    response = await client.get("/authorize", params=Flow.new(url, scope="openid").params)
    assert_error_page(response)
    assert "non-public address" in response.text
    assert "127.0.0.1" not in response.text and "::1" not in response.text
    assert docs.hits["/notes.json"] == 0  # refused before any connection


@pytest.mark.slow
async def test_a_document_slower_than_5_seconds_is_refused(
    client: httpx.AsyncClient, docs: DocumentsServer
) -> None:
    url = docs.serve("/slow.json", document(docs.url("/slow.json")), delay=6)
    response = await client.get("/authorize", params=Flow.new(url, scope="openid").params)
    assert_error_page(response)
    assert "not fetched within 5 seconds" in response.text


# --- the rules, as functions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # shared address space (RFC 6598)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("::ffff:127.0.0.1", False),
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
    ],
)
def test_which_addresses_are_public(address: str, allowed: bool) -> None:
    assert public(ipaddress.ip_address(address)) is allowed


def test_a_client_id_url_fits_the_client_id_column() -> None:
    # /authorize refuses a longer client_id before it is read as a URL (no client is longer).
    check_url("https://app.example/" + "n" * 100 + ".json")
    with pytest.raises(DocumentRefused, match="at most 128 characters"):
        check_url("https://app.example/" + "n" * 110 + ".json")


def test_freshness_follows_the_caching_headers() -> None:
    now = 1_000_000
    date = "Mon, 12 Jan 1970 13:46:40 GMT"  # = now
    assert fresh_until([("cache-control", "max-age=600")], now) == now + 600
    assert fresh_until([("cache-control", "max-age=600"), ("age", "100")], now) == now + 500
    assert fresh_until([("cache-control", "no-store, max-age=600")], now) == now
    assert fresh_until([("cache-control", "no-cache")], now) == now
    assert fresh_until([("cache-control", "max-age=99999999")], now) == now + MAX_FRESH
    assert fresh_until([("cache-control", "max-age=abc")], now) == now
    expires = "Mon, 12 Jan 1970 14:46:40 GMT"
    assert fresh_until([("expires", expires), ("date", date)], now) == now + 3600
    assert fresh_until([("expires", "0")], now) == now
    assert fresh_until([], now) == now
    # max-age wins over Expires (RFC 9111 §5.3).
    assert fresh_until([("expires", expires), ("cache-control", "max-age=5")], now) == now + 5
