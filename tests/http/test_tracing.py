"""OpenTelemetry traces (AUTHSERVER_TRACING=otlp, telemetry/tracing.py): every secret-bearing
request is sent with tracing on, the spans reach a real OTLP/HTTP collector (tests/_otlp.py)
through the SDK's batch exporter, and no secret is found in anything exported, in any of the
forms a secret travels in; while the request spans (named by route) and the statement spans
are there."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.actions import registration
from authserver.app import create_app
from authserver.config import Settings
from authserver.services import Services
from authserver.telemetry.tracing import TracedRequests
from tests._dpop import DPoPKey
from tests._otlp import Collector, attributes, otlp_collector
from tests.conftest import Clock, Registry, password_login
from tests.http.signin import INSECURE_COOKIES, Flow, code_for, exchange, web_client
from tests.test_metrics_workers import environment, fresh_connections, serving


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {**INSECURE_COOKIES, "tracing": "otlp", "registration": "token"}


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    with otlp_collector() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "authserver-under-test")
        yield running


@pytest.fixture
async def app(
    settings: Settings, engine: AsyncEngine, clock: Clock, collector: Collector
) -> AsyncIterator[Starlette]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


def test_off_installs_nothing(settings: Settings) -> None:
    # Off (the default): not a layer more on the request's way, not even a pass-through.
    plain = create_app(replace(settings, tracing="off"))
    traced = create_app(settings)
    added: object = traced.user_middleware[0].cls
    assert added is TracedRequests
    assert [m.cls for m in traced.user_middleware[1:]] == [m.cls for m in plain.user_middleware]


async def test_an_escaping_exception_leaves_only_its_class() -> None:
    # Past Observe only once the response has begun (a body cut off): its text may quote
    # anything, and OpenTelemetry would put it and the traceback in an event.
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("pw-leaked-into-an-error")

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    with pytest.raises(ValueError, match="pw-leaked"):
        await TracedRequests(failing, provider)(scope, receive, send)
    [span] = exported.get_finished_spans()
    assert not span.events
    assert span.status.description == "ValueError"
    assert "pw-leaked" not in repr(span.to_json())


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def encodings(secret: str) -> set[str]:
    """The forms a secret travels in: as is, percent-encoded (a query or form value), and
    base64 / base64url (Basic credentials, a JWT's parts)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {form.rstrip("=") for form in forms}


async def test_no_secret_reaches_a_span(
    client: httpx.AsyncClient,
    registry: Registry,
    services: Services,
    app: Starlette,
    collector: Collector,
    spa: str,
) -> None:
    found: list[str] = []  # every secret the requests below carry or receive

    def keep(*values: str) -> None:
        found.extend(values)

    # The password grant, an admin call with its token, its refresh, its revocation.
    password = "pw-" + secrets.token_urlsafe(16)
    keep(password)
    await registry.user("root", password, admin=True)
    response = await password_login(client, "root", password, client_id=spa, scope="admin")
    assert response.status_code == 200, response.text
    admin = response.json()
    keep(admin["access_token"], admin["refresh_token"])
    response = await client.get(
        "/admin/users", headers={"Authorization": f"Bearer {admin['access_token']}"}
    )
    assert response.status_code == 200, response.text
    refreshed = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": admin["refresh_token"],
            "client_id": spa,
        },
        # A caller's trace, continued: and the rotation's statement is in it, on Postgres too,
        # where it goes through asyncpg past SQLAlchemy's events (db/direct.py).
        headers={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"},
    )
    assert refreshed.status_code == 200, refreshed.text
    keep(refreshed.json()["access_token"], refreshed.json()["refresh_token"])
    response = await client.post(
        "/revoke", data={"token": refreshed.json()["refresh_token"], "client_id": spa}
    )
    assert response.status_code == 200, response.text

    # client_credentials with a secret (Basic), with a DPoP proof, and /introspect.
    service_secret = await registry.client("svc", scopes=("profile", "introspect"))
    assert service_secret is not None
    keep(service_secret)
    proof = DPoPKey().proof()
    keep(proof)
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("svc", service_secret),
        headers={"DPoP": proof},
    )
    assert response.status_code == 200, response.text
    keep(response.json()["access_token"])
    response = await client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "svc",
            "client_secret": service_secret,
        },
    )
    assert response.status_code == 200, response.text
    keep(response.json()["access_token"])
    response = await client.post(
        "/introspect", data={"token": admin["access_token"]}, auth=("svc", service_secret)
    )
    assert response.status_code == 200, response.text

    # /authorize with a code challenge and state, /login with a password, the code exchange.
    await web_client(registry)
    alice_password = "pw-" + secrets.token_urlsafe(16)
    keep(alice_password)
    await registry.user("alice", alice_password)
    flow = Flow.new()
    keep(flow.verifier, flow.params["state"], flow.params["code_challenge"])
    code = await code_for(client, flow, "alice", alice_password)
    keep(code)
    response = await exchange(client, code, flow)
    assert response.status_code == 200, response.text
    keep(*(str(value) for name, value in response.json().items() if name.endswith("token")))
    keep(*(value for value in client.cookies.values() if len(value) >= 16))

    # /register with an initial access token: its answer holds a secret and a token too.
    initial, _ = await registration.make_initial_token(services, "cli", 600, 1)
    keep(initial)
    response = await client.post(
        "/register",
        json={
            "redirect_uris": ["https://app.example/cb"],
            "client_name": "Notes",
            "token_endpoint_auth_method": "client_secret_basic",
        },
        headers={"Authorization": f"Bearer {initial}"},
    )
    assert response.status_code == 201, response.text
    keep(response.json()["client_secret"], response.json()["registration_access_token"])

    app.state.tracing.provider.force_flush()
    exported = "\n".join(collector.everything())
    assert len(found) > 20
    for secret in found:
        for form in encodings(secret):
            assert form not in exported, f"a secret ({secret[:6]}…) was exported as {form!r}"

    spans = collector.spans()
    requests = {span.name for span in spans if span.kind == span.SPAN_KIND_SERVER}
    assert {
        "POST /token",
        "GET /admin/users",
        "POST /revoke",
        "POST /introspect",
        "GET /authorize",
        "GET /login",
        "POST /login",
        "POST /register",
    } <= requests, requests
    statements = [span for span in spans if span.kind == span.SPAN_KIND_CLIENT]
    assert statements, "no database statement span"
    for span in statements:
        assert attributes(span)["db.query.text"], span
    # A statement is a child of the request that ran it.
    request_ids = {span.span_id for span in spans if span.kind == span.SPAN_KIND_SERVER}
    assert any(span.parent_span_id in request_ids for span in statements)
    rotation = [span for span in spans if span.trace_id.hex() == CALLER_TRACE]
    assert [span.name for span in rotation if span.kind == span.SPAN_KIND_SERVER] == ["POST /token"]
    assert any(span.kind == span.SPAN_KIND_CLIENT for span in rotation), rotation
    names = [attributes(span).get("http.route") for span in spans]
    assert "/admin/users" in names


def exporting_pids(collector: Collector) -> set[object]:
    return {
        item.value.int_value
        for export in collector.exports
        for resource in export.resource_spans
        for item in resource.resource.attributes
        if item.key == "process.pid"
    }


@pytest.mark.slow
async def test_each_worker_of_serve_exports_its_own_spans(
    tmp_path: Path, collector: Collector
) -> None:
    # A provider per worker, made in the worker: spans come from two processes, each with its
    # exporter thread (one made before the workers started would export from neither).
    env = environment(f"sqlite+aiosqlite:///{tmp_path / 'authserver.db'}", tmp_path)
    env.update(
        {
            "AUTHSERVER_TRACING": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    async with serving(env, tmp_path) as server, fresh_connections() as http:
        with anyio.fail_after(60):
            while len(exporting_pids(collector)) < 2:
                assert (await http.get(f"{server.url}/readyz")).status_code == 200
                await anyio.sleep(0.05)
    assert server.process.pid not in exporting_pids(collector)  # the supervisor serves nothing
    spans = collector.spans()
    assert "GET /readyz" in {span.name for span in spans}
    assert "SELECT sqlite" in {span.name for span in spans}
