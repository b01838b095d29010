"""OpenTelemetry traces (AUTHSERVER_TRACING=otlp): a span per request and per database statement,
sent over OTLP/HTTP. Off by default, and then nothing here runs: no middleware, no listener.

What a span may carry is decided here, because an authorization server's requests are made of
secrets (passwords and client secrets in form bodies, codes and tokens in bodies and headers,
state and code challenges in /authorize's query string, the session cookie):

- the request span (`TracedRequests`, our own middleware on the SDK's tracer) holds the method,
  the scheme, the HTTP version, the route template once the router has chosen it, and the
  status: never the path (an unknown one may carry anything; a known one carries ids), the
  query string, a header or the body. The headers are read only for the propagator's own fields
  (W3C `traceparent`/`tracestate` by default), so a caller's trace continues here. An exception
  that escapes the app (after its response began; Observe answers the others) leaves its class
  in the span's status, not its text or traceback;
- a statement span (db/statement_spans.py) carries the SQL text as SQLAlchemy sends it, with its
  placeholders and any literal replaced by `?`: bound parameters are never read. A failed
  statement's status says the exception's class only, as its text lists the parameters.

Not opentelemetry-instrumentation-asgi: it cost 35 µs a request even unsampled and 75-85 µs
recorded, against 8 and 27 µs here (bench/RESULTS.md, "Tracing on and off"), and it had to be
shown a doctored view of the request to keep the path and headers out of its spans.

Sampling: AUTHSERVER_TRACING_SAMPLE_RATIO with ParentBased(TraceIdRatioBased), unless
OTEL_TRACES_SAMPLER names a sampler, which the SDK then builds. Everything else the SDK reads
from the standard variables (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_PROPAGATORS, OTEL_BSP_*): docs/tracing.md.

A provider per process: `Tracing.start` runs in the app's lifespan, so in each worker of
`serve --workers N` after it was spawned, and its batch exporter's thread is that worker's.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from authserver import __version__

# ASGI's shapes (as starlette.types spells them; Starlette belongs to http/).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# OpenTelemetry's HTTP semantic conventions: a method outside this set is recorded as _OTHER
# (a request line's method is the caller's free text) and the span is named "HTTP".
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class Tracing:
    """One process's tracer provider and what it instruments."""

    def __init__(self, sample_ratio: float = 1.0, environ: Mapping[str, str] = os.environ) -> None:
        self.provider = TracerProvider(
            resource=_resource(environ), sampler=_sampler(sample_ratio, environ)
        )
        self.tracer = self.provider.get_tracer("authserver", __version__)

    def start(self) -> None:
        """In the serving process (the lifespan): the exporter and its thread."""
        # OTLPSpanExporter reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, ...;
        # BatchSpanProcessor OTEL_BSP_SCHEDULE_DELAY, _MAX_EXPORT_BATCH_SIZE, _MAX_QUEUE_SIZE.
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))

    def stop(self) -> None:
        self.provider.shutdown()  # sends what is still queued


def _sampler(ratio: float, environ: Mapping[str, str]) -> Sampler | None:
    if environ.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK builds it from OTEL_TRACES_SAMPLER[_ARG]
    # A caller that sampled its trace has it continued here whatever the ratio: a trace is
    # whole or absent.
    return ParentBased(TraceIdRatioBased(ratio))


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
    """A server span around each HTTP request, named `METHOD /route/template`."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer
        self.propagator = propagate.get_global_textmap()  # OTEL_PROPAGATORS, W3C by default
        # The only headers read: the propagator's own (traceparent, tracestate, baggage).
        self.fields = frozenset(field.encode("latin-1") for field in self.propagator.fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in self.fields
        }
        parent = self.propagator.extract(carrier) if carrier else None
        method = scope["method"]
        if method not in _METHODS:
            method = "_OTHER"
        span = self.tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            parent,
            SpanKind.SERVER,
            {
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        )
        # Current for what the request runs: its statements' spans are the span's children.
        token = context.attach(trace.set_span_in_context(span, parent))
        recording = span.is_recording()

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status: int = message["status"]
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:  # a 4xx is the client's error, not the server span's
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        try:
            # Not recorded (not sampled), the answer has nothing to write in the span: it goes
            # out untouched, one call fewer per message.
            await self.app(scope, receive, traced_send if recording else send)
        except Exception as exc:
            # The class only: the exception's text or traceback may quote a value.
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            context.detach(token)
            span.end()
