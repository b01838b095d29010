"""A real OTLP/HTTP trace collector on 127.0.0.1, in a thread: it decodes each export with
opentelemetry-proto (which comes with the exporter) and keeps the spans, as a collector would
receive them from authserver (AUTHSERVER_TRACING=otlp)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass
class Collector:
    url: str  # the base URL: OTEL_EXPORTER_OTLP_ENDPOINT
    exports: list[ExportTraceServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[Span]:
        with self.lock:
            return [
                span
                for export in self.exports
                for resource in export.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]

    def everything(self) -> list[str]:
        """Every string an export carries that a secret could hide in: resource and scope
        attributes, span names, attributes, events, links and statuses, keys and values."""
        found: list[str] = []
        with self.lock:
            exports = list(self.exports)
        for export in exports:
            for resource in export.resource_spans:
                found += _strings(resource.resource.attributes)
                for scope in resource.scope_spans:
                    found += [scope.scope.name, scope.scope.version]
                    found += _strings(scope.scope.attributes)
                    for span in scope.spans:
                        found += [span.name, span.status.message, span.trace_state]
                        found += _strings(span.attributes)
                        for event in span.events:
                            found += [event.name, *_strings(event.attributes)]
                        for link in span.links:
                            found += [link.trace_state, *_strings(link.attributes)]
        return found


def attributes(span: Span) -> dict[str, object]:
    return {item.key: _value(item.value) for item in span.attributes}


def _strings(items: object) -> list[str]:
    found: list[str] = []
    for item in items:  # type: ignore[attr-defined]
        assert isinstance(item, KeyValue)
        found += [item.key, str(_value(item.value))]
    return found


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.decode("latin-1")
    return getattr(value, kind) if kind else None


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    collector: Collector

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            export = ExportTraceServiceRequest.FromString(body)
            with collector.lock:
                collector.exports.append(export)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    collector = Collector(f"http://{host!s}:{port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
