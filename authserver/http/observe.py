"""What operators see of each request: a JSON access line, a request id, metrics; and the
security headers every response carries (http/headers.py), added in the same pass.

`Observe` is plain ASGI (no BaseHTTPMiddleware: it would buffer bodies and cost a task per
request). It takes the caller's X-Request-ID when it looks like an id, else makes one, echoes it
in the response and stamps every log line of the request with it (authserver.logs). An error no
handler answered is logged here with its traceback and answered 500 as http/errors.py does, so
that line too carries the request id. A client that left before its request was read is no
error of ours: its access line says so with status 499 (nginx's "client closed request").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authserver.errors import InvalidGrant
from authserver.http.errors import server_error
from authserver.http.headers import RawHeaders, with_headers
from authserver.telemetry import logs, metrics

# Ids from load balancers and tracers (UUIDs, hex, AWS "Root=1-...") fit this; anything else
# (too long, spaces, quotes, control characters) is replaced rather than logged.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:;=+/-]{0,127}")
_UNMATCHED = "<unmatched>"
CLIENT_GONE = 499


class Observe:
    def __init__(self, app: ASGIApp, *, headers: RawHeaders | None = None) -> None:
        self.app = app
        self.headers = headers or []
        self._names = frozenset(name for name, _ in [*self.headers, (b"x-request-id", b"")])
        self._by_labels: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _series(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """The request counter and histogram for these labels (labels() costs a lookup under
        a lock; the set is bounded: methods httptools knows, route templates, statuses)."""
        found = self._by_labels.get((method, route, status))
        if found is None:
            labels = (method, route, str(status))
            found = (metrics.REQUESTS.labels(*labels), metrics.LATENCY.labels(*labels))
            self._by_labels[(method, route, status)] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        token = logs.request_id.set(rid)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                extra = [*self.headers, (b"x-request-id", rid.encode())]
                headers = with_headers(message.get("headers", []), extra, self._names)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = CLIENT_GONE  # nobody is left to answer
        except Exception as exc:
            if response_started:
                raise
            # Logs the traceback (with the request id) and answers the contract's 500.
            response = await server_error(Request(scope), exc)
            await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope)
            method = scope["method"]
            count, latency = self._series(method, route, status)
            count.inc()
            latency.observe(seconds)
            if route in ("/token", "/login") and status == 429:
                metrics.LOGINS_THROTTLED.inc()
            gone = " client disconnected" if status == CLIENT_GONE else ""
            logs.log_access(
                f"{method} {route} {status}{gone}",
                {
                    "method": method,
                    # Never the query string, nor an unknown path whole: either may carry a token.
                    "path": scope["path"] if route != _UNMATCHED else _first_segment(scope["path"]),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            logs.request_id.reset(token)


@contextmanager
def observe_grant(grant_type: str | None) -> Iterator[None]:
    """Around one grant: counts the access token issued, or the password login refused."""
    try:
        yield
    except InvalidGrant:
        if grant_type == "password":
            metrics.LOGINS_FAILED.inc()
        raise
    metrics.count_token_issued(grant_type)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
            break
    return logs.new_request_id()


def _first_segment(path: str) -> str:
    head, slash, rest = path.lstrip("/").partition("/")
    return f"/{head[:32]}" + ("/…" if slash or len(head) > 32 else "")


def _route(scope: Scope) -> str:
    path: object = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else _UNMATCHED
