"""The audit trail: who did what to which key, user or client, and when.

Key events are written by the key store in the transaction that makes the change, so a
change and its record commit together; other admin actions are recorded just after they
succeed. Actors are the admin token's `sub` (a user id or, for client_credentials, the
client_id), "cli" for the command line, or "system" for the keys made at first start.
"""

from __future__ import annotations

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


class AuditLog(Protocol):
    async def record(self, events: Sequence[AuditEvent]) -> None:
        """Appends `events`, in order, in one transaction."""
        ...

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        """The newest `limit` events, oldest first."""
        ...
