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
import time
import uuid
from contextvars import ContextVar
from typing import Any

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
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _SKIP and not key.startswith("_") and value is not None:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def new_request_id() -> str:
    return uuid.uuid4().hex


def log_config(level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server; uvicorn applies it in every worker.

    uvicorn's own access log is off (`serve` passes access_log=False): ours replaces it, and
    uvicorn's would print query strings.
    """
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "json",
        "filters": ["request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        # Everything reaches the root's one handler (uvicorn's own config would stop its
        # loggers from propagating).
        "loggers": {
            "authserver": {"level": level.upper(), "propagate": True},
            "uvicorn": {"level": level.upper(), "propagate": True},
            "uvicorn.error": {"level": level.upper(), "propagate": True},
            "uvicorn.access": {"level": "WARNING", "propagate": True},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def configure(level: str = "info") -> None:
    logging.config.dictConfig(log_config(level))


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
