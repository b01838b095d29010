"""Cleanup: what no request can need any more is deleted, so tables stay bounded.

- refresh families (their tokens go with them) whose session ended or was revoked more than
  access TTL + clock leeway ago: their last access tokens have expired even for a verifier
  with skewed clock, so neither introspection nor the revocation feed (which lists families
  revoked in that same window) needs them;
- denied access tokens past their expiry (already `exp` + leeway when written);
- login throttle buckets quiet for longer than the throttle forgets;
- audit events older than the retention (AUTHSERVER_AUDIT_RETENTION_DAYS);
- authorization codes never used once expired; used ones `REPLAY_WINDOW` (minutes) after
  they expired: until then their holder's replay finds them and revokes what they started;
- login sessions past their absolute end or ended;
- one-time links in mail (accounts/links.py) once spent or expired: either way the page answers
  "this link does not work any more" as for a link it never knew;
- reset requests no resolver took within a reset link's lifetime (AUTHSERVER_PASSWORD_RESET_TTL):
  a mail that late would answer a question nobody is waiting on any more;
- the mail pages' request counts (page_limits.py) whose window ended: the next request of the
  bucket starts a new window anyway.
- DPoP proofs whose iat has left the window (their jti could not pass again anyway).
- open-mode registered clients (RFC 7591) older than AUTHSERVER_REGISTRATION_IDLE_PURGE with
  no authorization code or refresh family left (never used, or not for that long): anyone may
  make them, so they would otherwise grow without bound; their random ids are never reused,
  so the row goes (an operator's or a token-mode client is never purged);
- client ID metadata documents' clients (metadata_documents/) nobody used for
  AUTHSERVER_REGISTRATION_IDLE_PURGE, with no code or family left: any URL anyone names makes
  one. A use of such a client fetches its document whenever it is stale, so its freshness end
  (`document_expires_at`) is never before its last use: one older than the idle time has not
  been used since. Its consent grants go with it (ON DELETE CASCADE); the next use fetches the
  document again and asks the user again. A disabled or deleted one stays: it is an operator's
  decision, and gone it would be taken up again from its document;
- initial access tokens (registration) past their expiry;
- `verified` sign-ups whose link was never opened, once it expired (users.signup_expires_at):
  the account never signed in and never had a token, so the row goes whole and the username
  is free to sign up again. Deleted before the links, which mark nothing here but die then too.

Users and clients are deleted here only, and their refresh families (no foreign key since 0029)
with them, in the same transaction, by a statement after the one that deleted them: a login or
a code exchange that started a family for them held their row (FOR SHARE, or the code's row,
which the client's delete cascades to), so the delete waited for it to commit and the next
statement sees its family; one that comes after the delete finds no row and starts nothing.

A purge deletes in batches of at most `BATCH` rows per table, each batch one short
transaction, until a batch finds less than a full one: a backlog (purging was off, or the
database was down for a while) would otherwise be one huge DELETE that runs into the
statement timeout every round and never shrinks. On Postgres each batch first takes a
transaction-scoped advisory lock with `pg_try_advisory_xact_lock`: an instance that finds
another one purging skips this round (the lock goes with the transaction, even if the process
dies). SQLite has one writer anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.config import Settings
from authserver.db.engine import is_postgres
from authserver.db.failures import unavailable
from authserver.page_limits import LONGEST_WINDOW
from authserver.throttle import FORGET
from authserver.tokens.authorization_codes import REPLAY_WINDOW

log = logging.getLogger("authserver.purge")

# Any constant other than the key store's; it names the purge's lock.
PURGE_LOCK = 0x70757267  # "purg"

BATCH = 1000

# A family is kept while either end is recent: revoked_at within the window keeps it in the
# revocation feed even if its absolute end passed long ago.
_DEAD_FAMILIES = text("""
    SELECT id FROM refresh_families
    WHERE (expires_at < :cutoff OR revoked_at < :cutoff)
      AND (revoked_at IS NULL OR revoked_at < :cutoff)
    LIMIT :batch
""")
# Explicit rather than ON DELETE CASCADE alone: same result, and it does not depend on
# SQLite's foreign_keys pragma being on for the connection.
# A family's tokens: from before 0030 in refresh_tokens, its spent ones since in
# spent_refresh_tokens, its live one and the last spent in its own row (counted as it goes).
_TOKENS = text("DELETE FROM refresh_tokens WHERE family_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_SPENT_TOKENS = text("DELETE FROM spent_refresh_tokens WHERE family_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_HELD_TOKENS = text(
    "SELECT count(token_hash) + count(parent_hash) FROM refresh_families WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))
_FAMILIES = text("DELETE FROM refresh_families WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_DENIED = text("""
    DELETE FROM denied_access_tokens WHERE jti IN (
        SELECT jti FROM denied_access_tokens WHERE expires_at <= :now LIMIT :batch)
""")
_THROTTLE = text("""
    DELETE FROM login_throttle WHERE bucket IN (
        SELECT bucket FROM login_throttle
        WHERE last_failure_at < :before AND blocked_until < :before
          AND (pending = 0 OR pending_since < :before) LIMIT :batch)
""")
_CODES = text("""
    DELETE FROM authorization_codes WHERE code_hash IN (
        SELECT code_hash FROM authorization_codes
        WHERE (used_at IS NULL AND expires_at <= :now) OR expires_at < :used_before
        LIMIT :batch)
""")
_LOGIN_SESSIONS = text("""
    DELETE FROM login_sessions WHERE id IN (
        SELECT id FROM login_sessions WHERE expires_at <= :now OR revoked_at IS NOT NULL
        LIMIT :batch)
""")
# Still disabled: an operator who enabled or disabled the account cleared the column anyway.
_ABANDONED_SIGN_UPS = text("""
    DELETE FROM users WHERE id IN (
        SELECT id FROM users
        WHERE signup_expires_at <= :now AND disabled AND deleted_at IS NULL LIMIT :batch)
    RETURNING id
""")
_LINKS = text("""
    DELETE FROM link_tokens WHERE token_hash IN (
        SELECT token_hash FROM link_tokens WHERE expires_at <= :now OR spent_at IS NOT NULL
        LIMIT :batch)
""")
_RESET_REQUESTS = text("""
    DELETE FROM reset_requests WHERE id IN (
        SELECT id FROM reset_requests WHERE created_at < :before LIMIT :batch)
""")
# Without an index on window_start: the table holds one row per bucket (an address group or an
# email address asked in the last windows), and a purge is rare.
_PAGE_REQUESTS = text("""
    DELETE FROM page_requests WHERE bucket IN (
        SELECT bucket FROM page_requests WHERE window_start < :before LIMIT :batch)
""")
_DPOP_PROOFS = text("""
    DELETE FROM dpop_proofs WHERE proof_key IN (
        SELECT proof_key FROM dpop_proofs WHERE expires_at <= :now LIMIT :batch)
""")
_IDLE_CLIENTS = text("""
    DELETE FROM clients WHERE client_id IN (
        SELECT client_id FROM clients c
        WHERE c.registration = 'open' AND c.created_at < :before
          AND NOT EXISTS (SELECT 1 FROM refresh_families f WHERE f.client_id = c.client_id)
          AND NOT EXISTS (SELECT 1 FROM authorization_codes a WHERE a.client_id = c.client_id)
        LIMIT :batch)
    RETURNING client_id
""")
# Chosen first, deleted (checked again to be unused), then their consent grants deleted
# explicitly: a purged document's URL comes back as the same client_id, and a grant left behind
# (SQLite without its foreign_keys pragma) would let it in without asking.
_IDLE_DOCUMENTS = """
    c.registration = 'document' AND c.document_expires_at < :before
      AND NOT c.disabled AND c.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM refresh_families f WHERE f.client_id = c.client_id)
      AND NOT EXISTS (SELECT 1 FROM authorization_codes a WHERE a.client_id = c.client_id)
"""
_IDLE_DOCUMENT_CLIENTS = text(
    f"SELECT client_id FROM clients c WHERE {_IDLE_DOCUMENTS} LIMIT :batch"  # noqa: S608
)
_DOCUMENT_CONSENTS = text("DELETE FROM consent_grants WHERE client_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_DOCUMENT_CLIENTS = text(
    f"DELETE FROM clients WHERE client_id IN (SELECT client_id FROM clients c"  # noqa: S608
    f" WHERE c.client_id IN :ids AND {_IDLE_DOCUMENTS}) RETURNING client_id"
).bindparams(bindparam("ids", expanding=True))
# The families of users or clients just deleted: a separate statement, so its snapshot is taken
# after the delete waited for whoever held their rows (see the docstring).
_FAMILIES_OF_USERS = text("SELECT id FROM refresh_families WHERE user_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_FAMILIES_OF_CLIENTS = text("SELECT id FROM refresh_families WHERE client_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_INITIAL_TOKENS = text("""
    DELETE FROM initial_access_tokens WHERE token_hash IN (
        SELECT token_hash FROM initial_access_tokens WHERE expires_at <= :now LIMIT :batch)
""")
_AUDIT = text("""
    DELETE FROM audit_events WHERE id IN (
        SELECT id FROM audit_events WHERE at < :before LIMIT :batch)
""")


@dataclass(frozen=True)
class Purged:
    families: int
    refresh_tokens: int
    denied_access_tokens: int
    throttle_buckets: int
    audit_events: int
    authorization_codes: int = 0
    login_sessions: int = 0
    link_tokens: int = 0
    reset_requests: int = 0
    page_requests: int = 0
    dpop_proofs: int = 0
    registered_clients: int = 0
    initial_access_tokens: int = 0
    abandoned_sign_ups: int = 0
    document_clients: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')}: {n}" for name, n in vars(self).items())

    def __add__(self, other: Purged) -> Purged:
        pairs = zip(vars(self).values(), vars(other).values(), strict=True)
        return Purged(*(mine + theirs for mine, theirs in pairs))

    @property
    def most_in_one_table(self) -> int:
        # Tokens are not counted: a batch of families may carry any number of them.
        return max(
            self.families,
            self.denied_access_tokens,
            self.throttle_buckets,
            self.audit_events,
            self.authorization_codes,
            self.login_sessions,
            self.link_tokens,
            self.reset_requests,
            self.page_requests,
            self.dpop_proofs,
            self.registered_clients,
            self.initial_access_tokens,
            self.abandoned_sign_ups,
            self.document_clients,
        )


async def purge(
    engine: AsyncEngine, settings: Settings, now: int, batch: int = BATCH
) -> Purged | None:
    """Deletes what is no longer needed; None when another instance is purging (Postgres)."""
    total: Purged | None = None
    while True:
        async with engine.begin() as conn:
            if is_postgres(engine):
                locked = await conn.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PURGE_LOCK}
                )
                if not locked:  # another instance purges (it takes over a backlog too)
                    return total
            done = await _delete_batch(conn, settings, now, batch)
        total = done if total is None else total + done
        if done.most_in_one_table < batch:
            return total


async def _delete_batch(conn: AsyncConnection, settings: Settings, now: int, batch: int) -> Purged:
    cutoff = now - settings.access_token_ttl - settings.clock_leeway
    ids = list((await conn.execute(_DEAD_FAMILIES, {"cutoff": cutoff, "batch": batch})).scalars())
    tokens, families = await _delete_families(conn, ids)
    denied = await conn.execute(_DENIED, {"now": now, "batch": batch})
    quiet = now - FORGET
    throttle = await conn.execute(_THROTTLE, {"before": quiet, "batch": batch})
    retention = now - settings.audit_retention_days * 86_400
    audit = await conn.execute(_AUDIT, {"before": retention, "batch": batch})
    codes = await conn.execute(
        _CODES, {"now": now, "used_before": now - REPLAY_WINDOW, "batch": batch}
    )
    login_sessions = await conn.execute(_LOGIN_SESSIONS, {"now": now, "batch": batch})
    abandoned = list(
        (await conn.execute(_ABANDONED_SIGN_UPS, {"now": now, "batch": batch})).scalars()
    )
    owned_tokens, owned = await end_families_of(conn, users=abandoned)
    links = await conn.execute(_LINKS, {"now": now, "batch": batch})
    requests_before = now - settings.password_reset_ttl
    resets = await conn.execute(_RESET_REQUESTS, {"before": requests_before, "batch": batch})
    pages = await conn.execute(_PAGE_REQUESTS, {"before": now - LONGEST_WINDOW, "batch": batch})
    dpop_proofs = await conn.execute(_DPOP_PROOFS, {"now": now, "batch": batch})
    idle = now - settings.registration_idle_purge
    clients = list((await conn.execute(_IDLE_CLIENTS, {"before": idle, "batch": batch})).scalars())
    documents = await _delete_idle_documents(conn, idle, batch)
    ended = await end_families_of(conn, clients=[*clients, *documents])
    owned_tokens, owned = owned_tokens + ended[0], owned + ended[1]
    initial = await conn.execute(_INITIAL_TOKENS, {"now": now, "batch": batch})
    return Purged(
        families=int(families) + owned,
        refresh_tokens=int(tokens) + owned_tokens,
        denied_access_tokens=int(denied.rowcount),
        throttle_buckets=int(throttle.rowcount),
        audit_events=int(audit.rowcount),
        authorization_codes=int(codes.rowcount),
        login_sessions=int(login_sessions.rowcount),
        link_tokens=int(links.rowcount),
        reset_requests=int(resets.rowcount),
        page_requests=int(pages.rowcount),
        dpop_proofs=int(dpop_proofs.rowcount),
        registered_clients=len(clients),
        initial_access_tokens=int(initial.rowcount),
        abandoned_sign_ups=len(abandoned),
        document_clients=len(documents),
    )


async def _delete_idle_documents(conn: AsyncConnection, before: int, batch: int) -> list[str]:
    found = {"before": before, "batch": batch}
    ids = list((await conn.execute(_IDLE_DOCUMENT_CLIENTS, found)).scalars())
    if not ids:
        return []
    deleted = list(
        (await conn.execute(_DOCUMENT_CLIENTS, {"ids": ids, "before": before})).scalars()
    )
    if deleted:
        await conn.execute(_DOCUMENT_CONSENTS, {"ids": deleted})
    return deleted


async def end_families_of(
    conn: AsyncConnection, *, users: Sequence[str] = (), clients: Sequence[str] = ()
) -> tuple[int, int]:
    """Deletes the refresh families (and their tokens) of `users` and `clients`, which `conn`'s
    transaction has just deleted: (tokens, families) deleted. What the foreign keys' ON DELETE
    CASCADE did before 0029."""
    ids: list[Any] = []
    if users:
        ids += (await conn.execute(_FAMILIES_OF_USERS, {"ids": list(users)})).scalars()
    if clients:
        ids += (await conn.execute(_FAMILIES_OF_CLIENTS, {"ids": list(clients)})).scalars()
    return await _delete_families(conn, ids)


async def _delete_families(conn: AsyncConnection, ids: Sequence[Any]) -> tuple[int, int]:
    """Deletes the families `ids` with every token of theirs: (tokens, families) deleted."""
    if not ids:
        return 0, 0
    ids = list(ids)
    tokens = (await conn.execute(_TOKENS, {"ids": ids})).rowcount
    tokens += (await conn.execute(_SPENT_TOKENS, {"ids": ids})).rowcount
    # (Counted apart: SQLite 3.40's DELETE ... RETURNING said `parent_hash IS NOT NULL` of NULLs.)
    tokens += (await conn.execute(_HELD_TOKENS, {"ids": ids})).scalar_one()
    families = (await conn.execute(_FAMILIES, {"ids": ids})).rowcount
    return int(tokens), int(families)


async def purge_periodically(
    engine: AsyncEngine, settings: Settings, clock: Callable[[], int]
) -> None:
    """The in-process job: one purge every `purge_interval` seconds (never when it is 0).
    A database outage skips the round with a warning; the next one tries again."""
    if settings.purge_interval <= 0:
        return
    while True:
        await anyio.sleep(settings.purge_interval)
        try:
            purged = await purge(engine, settings, clock())
        except Exception as exc:
            translated = unavailable(exc)
            if translated is None:
                log.exception("purge failed")
            else:
                log.warning("purge skipped: %s", translated.detail)
            continue
        if purged is None:
            log.info("purge skipped: another instance is purging")
        else:
            log.info("purged %s", purged)
