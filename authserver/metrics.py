"""Prometheus metrics: what operators watch. Served at GET /metrics (authserver/http/observe.py).

The domain does not count anything itself. Requests, grants and failed logins are counted in
the HTTP layer; rotations, reuse detections and revoked families by `observed_sessions`, a
wrapper around the session store the use cases already call (wired in app.py).

Labels are bounded: routes are templates (`/admin/keys/{kid}/revoke`, not the kid), unknown
paths are one `<unmatched>` route, grant names outside the three we serve are `other`.

One process, one registry: with `serve --workers N` each worker counts on its own and a scrape
sees one of them (prometheus-client's multiprocess mode is the later fix; see README).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from authserver.sessions import Family, SessionStore

REQUESTS = Counter(
    "authserver_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "authserver_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route", "status"],
    # Token endpoints answer in milliseconds; a password login costs one argon2id (~50-500 ms).
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TOKENS_ISSUED = Counter("authserver_tokens_issued_total", "Access tokens issued.", ["grant"])
LOGINS_FAILED = Counter(
    "authserver_logins_failed_total", "Password logins refused (wrong username or password)."
)
LOGINS_THROTTLED = Counter(
    "authserver_logins_throttled_total", "Password logins answered 429 slow_down."
)
ROTATIONS = Counter("authserver_refresh_rotations_total", "Refresh tokens spent for a successor.")
REUSE_DETECTED = Counter(
    "authserver_refresh_reuse_detected_total", "Spent refresh tokens presented again (theft)."
)
FAMILIES_REVOKED = Counter(
    "authserver_families_revoked_total",
    "Refresh families revoked, by reason (reuse, logout, logout_all, revoked, ...).",
    ["reason"],
)

GRANTS = frozenset({"password", "refresh_token", "client_credentials"})


def grant_label(grant_type: str | None) -> str:
    return grant_type if grant_type in GRANTS else "other"


def observed_sessions(store: SessionStore) -> SessionStore:
    """`store`, counting rotations, reuse detections and revoked families as they happen."""
    return _ObservedSessions(store)


class _ObservedSessions:
    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def spend(self, *args: Any, **kwargs: Any) -> Family | None:
        family = await self._store.spend(*args, **kwargs)
        if family is not None:
            ROTATIONS.inc()
        return family

    async def spend_successor(self, *args: Any, **kwargs: Any) -> Family | None:
        family = await self._store.spend_successor(*args, **kwargs)
        if family is not None:
            ROTATIONS.inc()
        return family

    async def revoke(self, *args: Any, **kwargs: Any) -> bool:
        changed = bool(await self._store.revoke(*args, **kwargs))
        if changed:  # a family already revoked (a racing logout, a second reuse) counts once
            reason = _reason(args, kwargs)
            if reason == "reuse":
                REUSE_DETECTED.inc()
            FAMILIES_REVOKED.labels(reason).inc()
        return changed

    async def revoke_user(self, *args: Any, **kwargs: Any) -> int:
        count = await self._store.revoke_user(*args, **kwargs)
        if count:
            FAMILIES_REVOKED.labels(_reason(args, kwargs)).inc(count)
        return count


def _reason(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    # revoke(family_id, reason, now) and revoke_user(user_id, reason, now)
    reason = kwargs.get("reason", args[1] if len(args) > 1 else None)
    return str(reason) if reason else "unknown"
