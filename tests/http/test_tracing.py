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
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.actions import registration
from authserver.app import create_app
from authserver.config import Settings
from authserver.db import direct
from authserver.services import Services
from authserver.telemetry.tracing import TracedRequests, Tracing
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


# The engine events a statement span hangs on (db/statement_spans.py).
STATEMENT_EVENTS = ("before_cursor_execute", "after_cursor_execute", "handle_error")


async def test_off_installs_nothing(settings: Settings, collector: Collector) -> None:
    # Off (the default): not a layer more on the request's way, not even a pass-through, and
    # no listener on the engine's statements; on: exactly those, and the exporter.
    installed: dict[str, tuple[list[object], dict[str, int], bool]] = {}
    for mode in ("off", "otlp"):
        app = create_app(replace(settings, tracing=mode))
        async with app.router.lifespan_context(app):
            engine = app.state.engine.sync_engine
            listeners = {name: len(getattr(engine.dispatch, name)) for name in STATEMENT_EVENTS[:2]}
            # A dialect event in SQLAlchemy 2.1.
            listeners["handle_error"] = len(engine.dialect.dispatch.handle_error)
            installed[mode] = (
                [m.cls for m in app.user_middleware],
                listeners,
                engine in direct.TRACED,
            )
            assert hasattr(app.state, "tracing") == (mode == "otlp")
    off_middleware, off_listeners, off_traced = installed["off"]
    on_middleware, on_listeners, on_traced = installed["otlp"]
    assert on_middleware == [TracedRequests, *off_middleware]
    assert TracedRequests not in off_middleware
    assert off_listeners["before_cursor_execute"] == off_listeners["after_cursor_execute"] == 0
    assert {name: on_listeners[name] - off_listeners[name] for name in STATEMENT_EVENTS} == {
        name: 1 for name in STATEMENT_EVENTS
    }
    assert on_traced and not off_traced


def in_memory(tracing: Tracing) -> InMemorySpanExporter:
    exported = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(exported))
    return exported


async def call(app: Any, scope: dict[str, Any]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    await app(scope, receive, send)


def request(method: str = "GET", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "query_string": b"",
    }


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_the_sample_ratio_and_the_callers_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    # AUTHSERVER_TRACING_SAMPLE_RATIO=0: a trace begun here is never recorded, one the caller
    # sampled always is (ParentBased), and one it did not sample is not.
    tracing = Tracing(0.0, environ={})
    exported = in_memory(tracing)
    traced = TracedRequests(answer, tracing.tracer)
    await call(traced, request())
    await call(traced, request(traceparent=f"00-{CALLER_TRACE}-00f067aa0ba902b7-00"))
    assert exported.get_finished_spans() == ()
    await call(traced, request(traceparent=f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"))
    [span] = exported.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7
    assert span.context.trace_id == int(CALLER_TRACE, 16)
    # Ratio 1 (the default): every request; OTEL_TRACES_SAMPLER, when set, is the SDK's.
    tracing = Tracing(1.0, environ={})
    exported = in_memory(tracing)
    await call(TracedRequests(answer, tracing.tracer), request())
    assert len(exported.get_finished_spans()) == 1
    assert tracing.provider.sampler.get_description().startswith(
        "ParentBased{root:TraceIdRatioBased{1.0},"
    )
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracing = Tracing(1.0)
    assert tracing.provider.sampler.get_description() == "AlwaysOffSampler"


async def test_an_unknown_method_is_other() -> None:
    # The request line's method is the caller's text: a span carries only the known ones.
    tracing = Tracing(1.0, environ={})
    exported = in_memory(tracing)
    await call(TracedRequests(answer, tracing.tracer), request("PW-LEAKED"))
    [span] = exported.get_finished_spans()
    assert span.name == "HTTP"
    assert dict(span.attributes or {}) == {
        "http.request.method": "_OTHER",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.response.status_code": 204,
    }


async def test_an_escaping_exception_leaves_only_its_class() -> None:
    # Past Observe only once the response has begun (a body cut off): its text may quote
    # anything, and OpenTelemetry would put it and the traceback in an event.
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("pw-leaked-into-an-error")

    tracing = Tracing(1.0, environ={})
    exported = in_memory(tracing)
    scope = request()
    with pytest.raises(ValueError, match="pw-leaked"):
        await call(TracedRequests(failing, tracing.tracer), scope)
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
    root = await registry.user("root", password, admin=True)
    response = await password_login(client, "root", password, client_id=spa, scope="admin")
    assert response.status_code == 200, response.text
    admin = response.json()
    keep(admin["access_token"], admin["refresh_token"])
    response = await client.get(
        "/admin/users", headers={"Authorization": f"Bearer {admin['access_token']}"}
    )
    assert response.status_code == 200, response.text
    # A path with an id in it: the span has the route's template, the id appears nowhere.
    response = await client.get(
        f"/admin/users/{root}", headers={"Authorization": f"Bearer {admin['access_token']}"}
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
    assert root not in exported
    for secret in found:
        for form in encodings(secret):
            assert form not in exported, f"a secret ({secret[:6]}…) was exported as {form!r}"

    spans = collector.spans()
    requests = {span.name for span in spans if span.kind == span.SPAN_KIND_SERVER}
    assert {
        "POST /token",
        "GET /admin/users",
        "GET /admin/users/{sub}",
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
        text = attributes(span)["db.query.text"]
        assert isinstance(text, str) and text, span
        assert "'" not in text, text  # a literal in the text is replaced by ?
    # A statement is a child of the request that ran it.
    request_ids = {span.span_id for span in spans if span.kind == span.SPAN_KIND_SERVER}
    assert any(span.parent_span_id in request_ids for span in statements)
    # The caller's trace (its traceparent) continued: the request span is its span's child.
    rotation = [span for span in spans if span.trace_id.hex() == CALLER_TRACE]
    [continued] = [span for span in rotation if span.kind == span.SPAN_KIND_SERVER]
    assert continued.name == "POST /token"
    assert continued.parent_span_id.hex() == "00f067aa0ba902b7"
    assert any(span.kind == span.SPAN_KIND_CLIENT for span in rotation), rotation
    # OpenTelemetry's HTTP semantic conventions, and nothing else.
    assert attributes(continued) == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.route": "/token",
        "http.response.status_code": 200,
    }
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
