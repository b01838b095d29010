"""A span per statement an engine sends (AUTHSERVER_TRACING=otlp, telemetry/tracing.py), from
its cursor events, and around the hot statements db/direct.py sends through asyncpg itself:
named by the statement's first word, carrying its SQL text as sent, placeholders and all. Its
bound parameters are never read.

Not opentelemetry-instrumentation-sqlalchemy: it patches create_engine for the whole process,
declares SQLAlchemy < 2.1 (we run 2.1), and puts a failed statement's error text, which lists
the bound parameters, in the span's status.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine

from authserver.db import direct

_SPAN = "_authserver_span"  # where a statement's span waits on its execution context


def trace_statements(engine: Engine, tracer: trace.Tracer) -> None:
    direct.TRACED[engine] = _Statements(engine, tracer)


class _Statements:
    def __init__(self, engine: Engine, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.system = engine.dialect.name
        url = engine.url
        self.attributes: dict[str, str | int] = {"db.system.name": self.system}
        if url.database:
            self.attributes["db.namespace"] = url.database
        if url.host:
            self.attributes["server.address"] = url.host
        if url.port:
            self.attributes["server.port"] = url.port
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)
        event.listen(engine, "handle_error", self.failed)

    def start(self, statement: str) -> trace.Span:
        words = statement.split(None, 1)
        operation = words[0].upper() if words else ""
        # A child of the request's span: SQLAlchemy's greenlet runs in the request's context.
        return self.tracer.start_span(
            f"{operation} {self.system}".lstrip(),
            kind=SpanKind.CLIENT,
            attributes={
                **self.attributes,
                "db.operation.name": operation,
                "db.query.text": statement,  # placeholders; the parameters are never read
            },
        )

    @contextmanager
    def around(self, statement: str) -> Iterator[None]:
        """A statement sent past the engine's events (db/direct.py)."""
        span = self.start(statement)
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))  # see failed()
            raise
        finally:
            span.end()

    def before(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if context is not None:
            setattr(context, _SPAN, self.start(statement))

    def after(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        span = getattr(context, _SPAN, None)
        if span is not None:
            span.end()

    def failed(self, context: Any) -> None:
        span = getattr(context.execution_context, _SPAN, None)
        if span is not None:
            # The class only: a DBAPIError's text lists the statement's parameters.
            span.set_status(Status(StatusCode.ERROR, type(context.original_exception).__name__))
            span.end()
