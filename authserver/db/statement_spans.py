"""A span per statement an engine sends (AUTHSERVER_TRACING=otlp, telemetry/tracing.py), from
its cursor events, and around the hot statements db/direct.py sends through asyncpg itself:
named by the statement's first word, carrying its SQL text as sent, placeholders and all, and
any literal in it replaced by `?` (OpenTelemetry's sanitisation: a literal written into the
text is the one way a value could reach it). Its bound parameters are never read. What a
statement's span carries is worked out once per distinct statement text, so a span costs the
SDK's span and no more.

Not opentelemetry-instrumentation-sqlalchemy: it patches create_engine for the whole process,
declares SQLAlchemy < 2.1 (we run 2.1), and puts a failed statement's error text, which lists
the bound parameters, in the span's status.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine

from authserver.db import direct

_SPAN = "_authserver_span"  # where a statement's span waits on its execution context

# A quoted string ('it''s' included) or a number standing alone (not $1, :name_1, t1, 1e3x);
# or white space and comments, folded to a space (an apostrophe in a comment is no string).
_TOKENS = re.compile(
    r"(?P<literal>'(?:[^']|'')*'|(?<![\w$:.])\d+(?:\.\d+)?(?![\w.]))"
    r"|(?:\s|--[^\n]*|/\*.*?\*/)+",
    re.DOTALL,
)


def _sanitised(match: re.Match[str]) -> str:
    return "?" if match.lastgroup == "literal" else " "


def _described(statement: str) -> tuple[str, str]:
    """The statement's operation (its first word) and its text without literals or comments,
    its white space folded (a shorter span to encode and send)."""
    text = _TOKENS.sub(_sanitised, statement).strip()
    words = text.split(None, 1)
    return (words[0].upper() if words else "", text)


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
        name, attributes = self._spans(statement)
        # A child of the request's span: SQLAlchemy's greenlet runs in the request's context.
        return self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 (one instance per engine, kept for its life)
    def _spans(self, statement: str) -> tuple[str, dict[str, str | int]]:
        """A statement's span name and attributes (the SDK copies them)."""
        operation, text = _described(statement)
        return f"{operation} {self.system}".lstrip(), {
            **self.attributes,
            "db.operation.name": operation,
            "db.query.text": text,  # placeholders; the parameters are never read
        }

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
