"""OpenTelemetry traces (AUTHSERVER_TRACING=otlp): a span per request and per database statement,
sent over OTLP/HTTP. Off by default, and then nothing here runs: no middleware, no listener.

What a span may carry is decided here, not by the instrumentations' defaults, because an
authorization server's requests are made of secrets (passwords and client secrets in form
bodies, codes and tokens in bodies and headers, state and code challenges in /authorize's
query string, the session cookie):

- the request span is made by opentelemetry-instrumentation-asgi from a *view* of the request
  holding only its method, scheme, HTTP version, the addresses and the W3C trace context
  headers; never the path, the query string, another header or the body. It is named after
  the route template once the router has chosen it (`POST /token`, `GET /admin/users/{id}`),
  never the raw path, which may be an unknown one carrying anything. An exception that escapes
  the app (after its response began; Observe answers the others) leaves its class in the span's
  status, not its text or traceback;
- a statement span (engine events, db/statement_spans.py) carries the SQL text as SQLAlchemy
  sends it, with its placeholders: bound parameters are never read. A failed statement's
  status says the exception's class only, as its text lists the parameters.

Everything else the SDK reads from the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*): docs/tracing.md.

A provider per process: `Tracing.start` runs in the app's lifespan, so in each worker of
`serve --workers N` after it was spawned, and its batch exporter's thread is that worker's.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from authserver import __version__

# ASGI's shapes (as starlette.types spells them; Starlette belongs to http/).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The only request headers the instrumentation is shown: W3C Trace Context (a caller's trace
# continues here). Not baggage: nothing reads it, and it is the caller's free text.
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
# The view's keys, from the real scope. Not path, raw_path, query_string, headers, state.
_SHOWN = ("type", "asgi", "http_version", "method", "scheme", "server", "client", "root_path")
_SCOPE = "authserver.scope"  # where the view keeps the real scope for the app
_ESCAPED = "authserver.escaped"  # an exception the app raised, raised again past the span


class Tracing:
    """One process's tracer provider and what it instruments."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.provider = TracerProvider(resource=_resource(environ))
        # For the statement spans (db/statement_spans.py).
        self.tracer = self.provider.get_tracer("authserver", __version__)

    def start(self) -> None:
        """In the serving process (the lifespan): the exporter and its thread."""
        # OTLPSpanExporter reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, ...
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))

    def stop(self) -> None:
        self.provider.shutdown()  # sends what is still queued


def _resource(environ: Mapping[str, str]) -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES from os.environ;
    # what it is given here wins over them, so the default name is given only when neither
    # names the service.
    named = bool(environ.get("OTEL_SERVICE_NAME")) or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # The pid tells the workers of one `serve --workers N` apart.
    attributes: dict[str, str | int] = {SERVICE_VERSION: __version__, "process.pid": os.getpid()}
    if not named:
        attributes[SERVICE_NAME] = "authserver"
    return Resource.create(attributes)


class TracedRequests:
    """opentelemetry-instrumentation-asgi's server span around the app, made from a view of
    the request (the module's docstring says what it holds), renamed after the route."""

    def __init__(self, app: ASGIApp, provider: TracerProvider) -> None:
        self.app = app
        self.traced = OpenTelemetryMiddleware(
            self._inner,
            # Named by method until the route is known (OpenTelemetry's HTTP semantic
            # conventions: "{method}" when there is no route); the default is the raw path.
            default_span_details=lambda view: (view["method"], {}),
            tracer_provider=provider,
            # Its duration histograms: Prometheus has those already (telemetry/metrics.py).
            meter_provider=NoOpMeterProvider(),
            # A span per ASGI message sent or received costs more than it tells.
            exclude_spans=["receive", "send"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        view: dict[str, Any] = {key: scope[key] for key in _SHOWN if key in scope}
        view["path"] = ""
        view["headers"] = [(k, v) for k, v in scope["headers"] if k in _TRACE_HEADERS]
        view[_SCOPE] = scope
        await self.traced(view, receive, send)
        escaped = view.get(_ESCAPED)
        if escaped is not None:
            raise escaped

    async def _inner(self, view: Scope, receive: Receive, send: Send) -> None:
        scope: Scope = view[_SCOPE]
        span = trace.get_current_span()  # the server span, made just now

        async def named_send(message: Message) -> None:
            # The server span ends with the response's last message: named before it starts.
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{scope['method']} {route}")
                    span.set_attribute("http.route", route)
            await send(message)

        try:
            await self.app(scope, receive, named_send)
        except Exception as exc:
            # Carried past the instrumentation, which would record the exception's text and
            # traceback in the span (either may quote a value): the status names its class.
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            view[_ESCAPED] = exc
