"""Consent: what a user allowed a third-party client (a client with `consent: true`),
remembered per user and client so the consent page asks again only for more.

A grant is the scopes and resources allowed, and when last. "Allow" widens it (the union of
what was held and what is allowed now, settled by the store in one statement, so two "Allow"s
at once both count); revoking deletes it and ends the client's refresh families for the user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from authserver.audit import AuditEvent


@dataclass(frozen=True)
class Grant:
    client_id: str
    scopes: frozenset[str]
    resources: frozenset[str]
    granted_at: int


def covers(grant: Grant | None, scopes: Iterable[str], resources: Iterable[str]) -> bool:
    """The remembered grant holds everything asked: nothing more to ask the user."""
    if grant is None:
        return False
    return set(scopes) <= grant.scopes and set(resources) <= grant.resources


def consent_event(
    action: str, user_id: str, client_id: str, now: int, **detail: object
) -> AuditEvent:
    """`consent.granted`, `consent.denied` or `consent.revoked`, by the user, on the client."""
    return AuditEvent(now, user_id, f"consent.{action}", client_id, dict(detail), user=user_id)


class ConsentStore(Protocol):
    async def held(self, user_id: str, client_id: str) -> Grant | None: ...

    async def allow(
        self,
        user_id: str,
        client_id: str,
        scopes: Iterable[str],
        resources: Iterable[str],
        now: int,
        audit: AuditEvent,
    ) -> None:
        """Widens the grant by these (one statement), with its audit event."""
        ...

    async def grants(self, user_id: str) -> list[Grant]:
        """The user's grants, newest first."""
        ...

    async def revoke(self, user_id: str, client_id: str, now: int, audit: AuditEvent) -> bool:
        """Deletes the grant and revokes the client's live families for the user (a
        `family.revoked` event each), with `audit`; False when there was no grant."""
        ...
