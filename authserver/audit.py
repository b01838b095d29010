"""The audit trail: who did what to which key, user or client, and when.

Key events are written by the key store in the transaction that makes the change, so a
change and its record commit together; other admin actions are recorded just after they
succeed. Actors are the admin token's `sub` (a user id or, for client_credentials, the
client_id), "cli" for the command line, "scheduler" for a scheduled key rotation, or
"system" for the keys made at first start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AuditEvent:
    at: int
    actor: str
    action: str  # dotted, noun first: key.rotated, user.disabled, client.created, ...
    target: str  # the kid, user id or client_id acted on
    detail: dict[str, Any] = field(default_factory=dict)  # never secrets
    user: str | None = None  # the user (sub) the event concerns, for filtering
    family: str | None = None  # the refresh family (session) it concerns
    id: int | None = None  # the store's sequence number, once written


@dataclass(frozen=True)
class AuditQuery:
    """One page of GET /admin/audit: newest first, ids below `before`, optional filters."""

    limit: int = 100
    before: int | None = None
    user: str | None = None
    family: str | None = None
    action: str | None = None


class AuditLog(Protocol):
    async def record(self, events: Sequence[AuditEvent]) -> None:
        """Appends `events`, in order, in one transaction."""
        ...

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        """The newest `limit` events, oldest first."""
        ...

    async def page(self, query: AuditQuery) -> list[AuditEvent]:
        """The events matching `query`, newest first."""
        ...


ANONYMOUS = "anonymous"


def username_digest(username: str) -> str:
    """How a failed login names who was tried: never the name itself, which may be a password
    typed in the wrong field."""
    return "sha256:" + hashlib.sha256(username.encode()).hexdigest()
