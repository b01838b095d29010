"""OAuth clients: registration data and client authentication (RFC 6749 §2.3)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from authserver.errors import InvalidClient, InvalidRequest

GRANT_TYPES = ("password", "refresh_token", "client_credentials")
RefreshDelivery = Literal["body", "cookie"]


@dataclass(frozen=True)
class Client:
    client_id: str
    # SHA-256 of the secret: secrets are 256 random bits, so a slow hash buys nothing and
    # would cap client_credentials at a few logins a second.
    secret_hash: str | None
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    refresh_delivery: RefreshDelivery = "body"

    @property
    def is_public(self) -> bool:
        return self.secret_hash is None


@dataclass(frozen=True)
class ClientCredentials:
    """What the request said about the client, before anything is checked."""

    client_id: str | None
    secret: str | None


class ClientStore(Protocol):
    async def get(self, client_id: str) -> Client | None: ...

    async def create(self, client: Client, now: int) -> bool:
        """Stores a new client; False when the client_id is taken."""
        ...

    async def scopes_in_use(self) -> list[str]:
        """Every scope some client may ask for, sorted (for the metadata document)."""
        ...


class CachedClients:
    """A ClientStore that remembers the clients it found for a few seconds.

    Every token, introspection and revocation request authenticates its client, and a lookup
    costs a database round trip; registrations only ever add clients, so a short memory is
    safe. The bound is for rows an operator edits by hand: seen everywhere within `ttl`
    seconds, at once where the change is announced (`forget`, called on Postgres NOTIFY:
    db/notify.py). Unknown ids are not remembered, so made-up ids cannot fill the memory.
    """

    def __init__(
        self, store: ClientStore, clock: Callable[[], int], ttl: int = 5, size: int = 1024
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._found: dict[str, tuple[int, Client]] = {}

    async def get(self, client_id: str) -> Client | None:
        now = self._clock()
        hit = self._found.get(client_id)
        if hit is not None and now < hit[0]:
            return hit[1]
        client = await self._store.get(client_id)
        if client is None:
            self._found.pop(client_id, None)
            return None
        if len(self._found) >= self._size and client_id not in self._found:
            del self._found[next(iter(self._found))]  # the oldest entry
        self._found[client_id] = (now + self._ttl, client)
        return client

    def forget(self, client_id: str | None = None) -> None:
        """A client changed (None: any may have): the next lookup asks the store."""
        if client_id is None:
            self._found.clear()
        else:
            self._found.pop(client_id, None)

    async def create(self, client: Client, now: int) -> bool:
        return await self._store.create(client, now)

    async def scopes_in_use(self) -> list[str]:
        return await self._store.scopes_in_use()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Compared against when the client_id is unknown, so both failures take the same path.
_NO_SUCH_SECRET = hash_secret("no client has this secret")


async def authenticate_client(
    clients: ClientStore, credentials: ClientCredentials, *, require_confidential: bool = False
) -> Client:
    """RFC 6749 §2.3.1: a confidential client proves its secret; a public one only names itself."""
    if not credentials.client_id:
        raise InvalidClient(detail="no client_id")
    client = await clients.get(credentials.client_id)
    if client is not None and client.is_public:
        if credentials.secret is not None:
            raise InvalidClient(detail="public client sent a secret")
        if require_confidential:
            raise InvalidClient("This endpoint needs a confidential client.")
        return client
    presented = hash_secret(credentials.secret or "")
    expected = client.secret_hash if client and client.secret_hash else _NO_SUCH_SECRET
    if not hmac.compare_digest(presented, expected) or client is None or credentials.secret is None:
        raise InvalidClient(detail="unknown client or wrong secret")
    return client


def check_client_fields(client_id: str, grant_types: list[str], delivery: str) -> None:
    if not client_id or len(client_id) > 128 or not client_id.isprintable() or " " in client_id:
        raise InvalidRequest("client_id must be 1 to 128 printable characters without spaces.")
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown:
        raise InvalidRequest(f"Unknown grant type: {unknown[0]}.")
    if delivery not in ("body", "cookie"):
        raise InvalidRequest("refresh_delivery must be body or cookie.")
