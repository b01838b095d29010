"""Structured logs: one JSON object per line on stderr, each stamped with the request id.

What may appear in a line is decided where it is logged: the access line carries the method,
the path (never the query string), the route, the status, the duration and the request id;
errors carry their private `detail`. No handler logs a form field, a header value other than
the request id, a token or a key, and tests/test_logs.py drives every kind of request and
searches every line for the secrets it used.
"""

from __future__ import annotations

import json
import logging
import logging.config
import random
import threading
import time
from contextvars import ContextVar
from typing import Any

import orjson

# One line per request (http/observe.py): the only lines worth batching.
ACCESS_LOGGER = "authserver.access"

_access_logger = logging.getLogger(ACCESS_LOGGER)

# The id of the request being served, set by the access-log middleware for its duration.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# uvicorn adds an ANSI-coloured copy of its messages.
_SKIP = _STANDARD | {"color_message"}


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged in (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _head(record.created, record.levelname.lower(), record.name, record.getMessage())
        for key, value in vars(record).items():
            if key not in _SKIP and not key.startswith("_") and value is not None:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = self.formatException(record.exc_info)
        return _dumps(line)


def _head(created: float, level: str, logger: str, msg: str) -> dict[str, Any]:
    return {"ts": _timestamp(created), "level": level, "logger": logger, "msg": msg}


def _dumps(line: dict[str, Any]) -> str:
    try:
        return orjson.dumps(line, default=str).decode()
    except TypeError:  # a lone surrogate, or an int past 64 bits, which orjson refuses
        return json.dumps(line, default=str, ensure_ascii=False)


def log_access(msg: str, fields: dict[str, Any]) -> None:
    """Logs one access line (http/observe.py) as `info(msg, extra=fields)` on the access
    logger would. When logging is set up as `serve` sets it up, the line is made here and
    handed straight to the one handler that would write it: a LogRecord, its filters and the
    handlers' locks were 40 % of the CPU a JWKS GET costs (bench/asgi_overhead.py). Any other
    set-up (another handler, a filter, a level) takes the ordinary way."""
    handler = _sole_access_handler()
    if handler is None:
        _access_logger.info(msg, extra=fields)
        return
    line = _head(time.time(), "info", ACCESS_LOGGER, msg)
    line.update(fields)
    if (rid := request_id.get()) is not None:
        line["request_id"] = rid
    handler.emit_line(_dumps(line), batched=True)


def _sole_access_handler() -> BatchedStreamHandler | None:
    """The handler an access line would reach, if it is the only one, a BatchedStreamHandler
    that formats with JsonFormatter and stamps the request id, and nothing would filter the
    line on its way there; None otherwise."""
    logger: logging.Logger | None = _access_logger
    if _access_logger.filters or not _access_logger.isEnabledFor(logging.INFO):
        return None
    found: list[logging.Handler] = []
    while logger is not None:  # the loggers Logger.callHandlers would visit
        found += logger.handlers
        logger = logger.parent if logger.propagate else None
    if len(found) != 1 or type(handler := found[0]) is not BatchedStreamHandler:
        return None
    if handler.level > logging.INFO or type(handler.formatter) is not JsonFormatter:
        return None
    if any(type(f) is not RequestIdFilter for f in handler.filters):
        return None
    return handler


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes the access lines in batches, off the event loop.

    A write (and a flush) per line cost a quarter of a JWKS GET in the profile. Access lines
    wait at most `interval` seconds in memory and are written by a background thread; any other
    line is written at once, with whatever waited before it. The server's lifespan flushes at
    shutdown (`flush_handlers`): uvicorn ends a SIGTERM'd process by raising the signal again,
    so no atexit hook (logging's own shutdown included) would run.
    """

    def __init__(self, stream: Any = None, interval: float = 0.2, capacity: int = 512) -> None:
        super().__init__(stream)
        self.interval = interval
        self.capacity = capacity
        self._lines: list[str] = []
        self._writer: threading.Thread | None = None
        # Not `_closed`: logging.Handler.close() sets that name to True, which the writer then
        # met instead of this event ("'bool' object has no attribute 'wait'").
        self._stop_writer = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        # Called with self.lock held (Handler.handle).
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line, batched=record.name == ACCESS_LOGGER)

    def emit_line(self, line: str, batched: bool) -> None:
        """A line formatted already (log_access): as emit() would add it."""
        self.acquire()
        try:
            self._add(line, batched)
        finally:
            self.release()

    def _add(self, line: str, batched: bool) -> None:
        self._lines.append(line)
        if not batched or len(self._lines) >= self.capacity:
            self._write()
        elif self._writer is None:
            self._writer = threading.Thread(
                target=self._write_periodically, name="log-writer", daemon=True
            )
            self._writer.start()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
            super().flush()
        finally:
            self.release()

    def close(self) -> None:
        self._stop_writer.set()
        self.flush()
        super().close()

    def _write(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self.stream.write("".join(line + self.terminator for line in lines))
            self.stream.flush()

    def _write_periodically(self) -> None:
        while not self._stop_writer.wait(self.interval):
            try:
                self.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream: those lines are lost, later ones may not be


class RateLimitFilter(logging.Filter):
    """Lets through one record per `interval` seconds of those whose message contains one of
    `messages`, and says how many were dropped in between; every other record passes.

    For lines a flood repeats as fast as it can: asyncio logs "socket.accept() out of system
    resource" at every retry once the process has no file descriptor left (hundreds of MB of
    log in seconds), and http/server.py logs each connection refused past
    AUTHSERVER_MAX_CONNECTIONS.
    """

    def __init__(self, messages: list[str], interval: float = 10.0) -> None:
        super().__init__()
        self.messages = tuple(messages)
        self.interval = interval
        self._next = 0.0
        self._dropped = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if not any(message in text for message in self.messages):
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._dropped += 1
                return False
            self._next = now + self.interval
            dropped, self._dropped = self._dropped, 0
        if dropped:
            record.suppressed = dropped
            record.msg = f"{record.msg} ({dropped} more like it in the last {self.interval:g} s)"
        # The traceback of an accept error says nothing the message does not.
        record.exc_info = None
        record.exc_text = None
        return True


def new_request_id() -> str:
    # An id to find a request's lines by, not a secret: the Mersenne Twister is enough (and
    # is reseeded in forked children), where uuid4 spent a system call per request.
    return f"{random.getrandbits(128):032x}"


def log_config(level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server; uvicorn applies it in every worker.

    uvicorn's own access log is off (`serve` passes access_log=False): ours replaces it, and
    uvicorn's would print query strings.
    """
    handler = {
        "()": BatchedStreamHandler,
        "stream": "ext://sys.stderr",
        "formatter": "json",
        "filters": ["request_id"],
    }
    flood = {
        "()": RateLimitFilter,
        "messages": ["out of system resource", "connection refused:"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}, "flood": flood},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        # Everything reaches the root's one handler (uvicorn's own config would stop its
        # loggers from propagating).
        "loggers": {
            "authserver": {"level": level.upper(), "propagate": True},
            "uvicorn": {"level": level.upper(), "propagate": True},
            "uvicorn.error": {"level": level.upper(), "propagate": True},
            "uvicorn.access": {"level": "WARNING", "propagate": True},
            # Lines a flood repeats: at most one per 10 s each (RateLimitFilter).
            "asyncio": {"filters": ["flood"], "propagate": True},
            "authserver.http.busy": {"filters": ["flood"], "propagate": True},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def configure(level: str = "info") -> None:
    logging.config.dictConfig(log_config(level))


def flush_handlers() -> None:
    """Writes out what the root logger's handlers hold (the batched access lines)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def skip_unused_record_fields() -> None:
    """The logging HOWTO's "Optimization": a record need not find its caller's file and line,
    thread or process, which no line we write shows."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


_last_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    global _last_second
    whole = int(created)
    if _last_second[0] != whole:  # formatted once a second, not once a line
        _last_second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_last_second[1]}.{int(created % 1 * 1000):03d}Z"
