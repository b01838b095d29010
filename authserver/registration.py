"""Dynamic client registration (RFC 7591) and its management (RFC 7592): the tokens and the
store port. The metadata rules are clients.check_metadata, the same as operators'.

Modes (AUTHSERVER_REGISTRATION): `off`; `open`, anyone registers a public client; `token`, a
bearer initial access token an operator made (`authserver clients registration-token`) is
required, and may also register a confidential client. Every token here is 256 random bits
stored only as its SHA-256 (clients.hash_secret), as client secrets are.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from authserver.audit import AuditEvent
from authserver.clients import Client

OFF, OPEN, TOKEN = "off", "open", "token"
# RFC 7591 §2 members authserver keeps and shows back but does not act on.
KEPT_MEMBERS = ("client_uri", "logo_uri", "application_type", "tos_uri", "policy_uri")
APPLICATION_TYPES = ("web", "native")
MAX_INITIAL_TOKEN_TTL = 365 * 86_400


def new_client_id() -> str:
    return "dcr_" + secrets.token_urlsafe(18)


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class InitialAccessToken:
    token_hash: str
    created_at: int
    expires_at: int
    max_uses: int | None  # None: any number until it expires
    uses: int = 0


class RegistrationStore(Protocol):
    async def create_initial_token(self, token: InitialAccessToken, audit: AuditEvent) -> None:
        """Stores an operator's initial access token (its hash), with `audit`."""
        ...

    async def live_initial_tokens(self, now: int, limit: int) -> list[InitialAccessToken]:
        """The initial access tokens that still register (unexpired, uses left), newest
        first, at most `limit`."""
        ...

    async def revoke_initial_token(self, token_hash: str, now: int, audit: AuditEvent) -> bool:
        """Ends a live initial access token now (it expires at `now`), with `audit`, in ONE
        statement: a registration racing it either spent a use before or is refused. False
        (nothing changed) for an unknown, expired or used-up one."""
        ...

    async def register(
        self, client: Client, initial_token_hash: str | None, now: int, audit: AuditEvent
    ) -> bool:
        """Stores `client` and `audit` in one transaction. With `initial_token_hash`, first
        spends one use of that initial access token in ONE statement (live, and uses left),
        so two registrations racing for the last use see one winner; False when it has none
        (nothing is stored)."""
        ...
