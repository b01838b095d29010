"""Prometheus metrics: what operators watch. Served at GET /metrics (http/metrics_endpoint.py).

The domain does not count anything itself. Requests, grants and failed logins are counted in
the HTTP layer; rotations, reuse detections and revoked families by `observed_families`, a
wrapper around the session store the use cases already call; the signing keys' age and changes
by `observed_keys`, a wrapper around the key store (both wired in app.py); connections in use by
pool events (db/pool_metrics.py).

Labels are bounded: routes are templates (`/admin/keys/{kid}/revoke`, not the kid), unknown
paths are one `<unmatched>` route, grant names outside the three we serve are `other`.

With `serve --workers N` every worker keeps its values in files of a shared directory
(prometheus-client's multiprocess mode, telemetry/multiprocess.py), and a scrape merges them; so
each gauge says how workers combine: connections in use add up over the live workers, a key
timestamp is the one a worker read last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from authserver.accounts.login_sessions import Ended, LoginSessionStore
from authserver.keys.lifecycle import Transition
from authserver.keys.manager import KeyStore
from authserver.keys.records import KeyRecord
from authserver.mail.sender import MailQueue
from authserver.telemetry.multiprocess import use_remembered_pid
from authserver.tokens.authorization_codes import CodeStore
from authserver.tokens.refresh import FamilyStore, Spent

use_remembered_pid()  # before the first metric below is made

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

SIGNING_KEY_CREATED = Gauge(
    "authserver_signing_key_created_timestamp_seconds",
    "When the active signing key was made, in Unix seconds: its age is time() minus this.",
    multiprocess_mode="mostrecent",
)
SIGNING_KEY_ACTIVATED = Gauge(
    "authserver_signing_key_activated_timestamp_seconds",
    "When the active signing key began to sign, in Unix seconds (scheduled rotation counts "
    "AUTHSERVER_KEY_ROTATION_INTERVAL from here).",
    multiprocess_mode="mostrecent",
)
SIGNING_KEY_CHANGES = Counter(
    "authserver_signing_key_changes_total",
    "Signing-key changes this server made, by action: rotate (admin API), scheduled, revoke.",
    ["action"],
)
DB_CONNECTIONS_IN_USE = Gauge(
    "authserver_db_pool_connections_in_use",
    "Database connections checked out of the pool: requests and tasks using one right now.",
    multiprocess_mode="livesum",
)

AUTHORIZE = Counter(
    "authserver_authorize_requests_total",
    "GET /authorize answers, by outcome: code (back to the client with one), sign_in (to the "
    "sign-in page), error (back to the client with an error), error_page (not redirected).",
    ["outcome"],
)
AUTHORIZE_OUTCOMES = ("code", "sign_in", "error", "error_page")
LOGIN_SESSIONS_STARTED = Counter(
    "authserver_login_sessions_started_total", "Sign-ins on the hosted page (login sessions)."
)
CODES_ISSUED = Counter("authserver_codes_issued_total", "Authorization codes issued.")
MAIL = Counter(
    "authserver_mail_total",
    "Mail attempts settled by the sender, by outcome: sent, retried (put off with backoff), "
    "dropped (refused for good, or out of attempts).",
    ["outcome"],
)
MAIL_OUTCOMES = ("sent", "retried", "dropped")

# Answered by the connection itself (http/server.py), so no request reaches Observe's counter.
REFUSED = Counter(
    "authserver_http_refused_total",
    "Requests and connections the server answered before the app ran, by status: 400 "
    "(malformed HTTP, or Content-Length with Transfer-Encoding), 408 (the head too slow), 414 "
    "(the URL too long), 431 (the head too large), 503 (past AUTHSERVER_MAX_CONNECTIONS).",
    ["status"],
)
REFUSAL_STATUSES = (400, 408, 414, 431, 503)

GRANTS = frozenset({"authorization_code", "password", "refresh_token", "client_credentials"})
KEY_ACTIONS = ("rotate", "scheduled", "revoke")
for _action in KEY_ACTIONS:  # at 0 from the start, so rate() and increase() see the first one
    SIGNING_KEY_CHANGES.labels(_action)
for _outcome in AUTHORIZE_OUTCOMES:
    AUTHORIZE.labels(_outcome)
for _outcome in MAIL_OUTCOMES:
    MAIL.labels(_outcome)


_REFUSED_BY_STATUS = {status: REFUSED.labels(str(status)) for status in REFUSAL_STATUSES}


def count_refused(status: int) -> None:
    child = _REFUSED_BY_STATUS.get(status)
    (child or REFUSED.labels(str(status))).inc()


def grant_label(grant_type: str | None) -> str:
    return grant_type if grant_type in GRANTS else "other"


# labels() costs a lookup under a lock; one child per grant, made once.
_TOKENS_ISSUED_BY_GRANT = {label: TOKENS_ISSUED.labels(label) for label in [*GRANTS, "other"]}


def count_token_issued(grant_type: str | None) -> None:
    _TOKENS_ISSUED_BY_GRANT[grant_label(grant_type)].inc()


def observed_families(store: FamilyStore) -> FamilyStore:
    """`store`, counting rotations, reuse detections and revoked families as they happen."""
    return _ObservedFamilies(store)


class _ObservedFamilies:
    def __init__(self, store: FamilyStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def spend(self, *args: Any, **kwargs: Any) -> Spent | None:
        spent = await self._store.spend(*args, **kwargs)
        if spent is not None:
            ROTATIONS.inc()
        return spent

    async def spend_successor(self, *args: Any, **kwargs: Any) -> Spent | None:
        spent = await self._store.spend_successor(*args, **kwargs)
        if spent is not None:
            ROTATIONS.inc()
        return spent

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

    async def revoke_client(self, *args: Any, **kwargs: Any) -> int:
        count = await self._store.revoke_client(*args, **kwargs)
        if count:
            FAMILIES_REVOKED.labels(_reason(args, kwargs)).inc(count)
        return count

    async def revoke_user_holding(self, *args: Any, **kwargs: Any) -> int:
        count = await self._store.revoke_user_holding(*args, **kwargs)
        if count:  # reason is keyword-only here
            FAMILIES_REVOKED.labels(_reason((), kwargs)).inc(count)
        return count


def observed_login_sessions(store: LoginSessionStore) -> LoginSessionStore:
    """`store`, counting sign-ins and the families /end-session revokes."""
    return _ObservedLoginSessions(store)


class _ObservedLoginSessions:
    def __init__(self, store: LoginSessionStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def start(self, *args: Any, **kwargs: Any) -> bool:
        started = bool(await self._store.start(*args, **kwargs))
        if started:
            LOGIN_SESSIONS_STARTED.inc()
        return started

    async def end(self, *args: Any, **kwargs: Any) -> Ended | None:
        return _counted(await self._store.end(*args, **kwargs))

    async def end_by_id(self, *args: Any, **kwargs: Any) -> Ended | None:
        return _counted(await self._store.end_by_id(*args, **kwargs))


def _counted(ended: Ended | None) -> Ended | None:
    if ended is not None and ended.families:
        FAMILIES_REVOKED.labels("end_session").inc(len(ended.families))
    return ended


def observed_codes(store: CodeStore) -> CodeStore:
    """`store`, counting the codes issued (the ones redeemed are tokens issued by grant, and a
    replay is a family revoked with reason code_replay)."""
    return _ObservedCodes(store)


class _ObservedCodes:
    def __init__(self, store: CodeStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def issue(self, *args: Any, **kwargs: Any) -> bool:
        issued = bool(await self._store.issue(*args, **kwargs))
        if issued:
            CODES_ISSUED.inc()
        return issued


def observed_mail(queue: MailQueue) -> MailQueue:
    """`queue`, counting how the sender settles each mail it claimed."""
    return _ObservedMail(queue)


class _ObservedMail:
    def __init__(self, queue: MailQueue) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def sent(self, mail_id: str) -> None:
        await self._queue.sent(mail_id)
        MAIL.labels("sent").inc()

    async def retry(self, claim: str, mail_id: str, at: int) -> None:
        await self._queue.retry(claim, mail_id, at)
        MAIL.labels("retried").inc()

    async def drop(self, claim: str, mail_id: str) -> None:
        await self._queue.drop(claim, mail_id)
        MAIL.labels("dropped").inc()


def _reason(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    # revoke(family_id, reason, now), revoke_user(user_id, …) and revoke_client(client_id, …)
    reason = kwargs.get("reason", args[1] if len(args) > 1 else None)
    return str(reason) if reason else "unknown"


def observed_keys(store: KeyStore) -> KeyStore:
    """`store`, setting the active key's timestamps whenever the keys are read (every reload)
    and counting the rotations and revocations made through it."""
    return _ObservedKeys(store)


class _ObservedKeys:
    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def all(self) -> list[KeyRecord]:
        records = await self._store.all()
        active = next((r for r in records if r.state == "active"), None)  # one at most (index)
        if active is not None:
            SIGNING_KEY_CREATED.set(active.created_at)
            SIGNING_KEY_ACTIVATED.set(active.activated_at or active.created_at)
        return records

    async def change(
        self, decide: Callable[[list[KeyRecord]], Transition], actor: str, now: int
    ) -> Transition:
        transition = await self._store.change(decide, actor, now)
        actions = {event.action for event in transition.events}
        if "key.revoked" in actions:
            SIGNING_KEY_CHANGES.labels("revoke").inc()
        elif "key.activated" in actions:
            # "scheduler" is the actor SigningKeys.rotate_if_due writes (and audits) as.
            SIGNING_KEY_CHANGES.labels("scheduled" if actor == "scheduler" else "rotate").inc()
        return transition  # no events: nothing changed (not due, or revoked already)
