"""OAuth clients: registration data and client authentication (RFC 6749 §2.3)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from authserver.audit import AuditEvent
from authserver.config import loopback_host
from authserver.errors import InvalidClient, InvalidRequest
from authserver.tokens.resources import resource_problem
from authserver.tokens.scopes import valid_scope_tokens

# How many resources an operator may list for one client (a list to read, not a registry).
MAX_CLIENT_RESOURCES = 64
GRANT_TYPES = ("authorization_code", "password", "refresh_token", "client_credentials")
MAX_REDIRECT_URI = 2000
MAX_CLIENT_NAME = 100  # a line on the sign-in page, not a paragraph
# How long an instance may remember a client (CachedClients): a client disabled on another
# instance may still be issued tokens for this long (API.md allows it, docs/ say it).
CLIENT_MEMORY_SECONDS = 5
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
    # Where /authorize may send the browser back, and /end-session after a logout: each
    # compared with what a request names as an exact string (RFC 9700 §4.1.3).
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    # What the hosted pages call the client ("to continue to <client_name>"); None: its id.
    client_name: str | None = None
    # Browser origins of this client's pages, besides AUTHSERVER_ALLOWED_ORIGINS: answered by
    # CORS and let call the cookie endpoints (origin_allowed).
    allowed_origins: tuple[str, ...] = ()
    disabled: bool = False
    # The secret before the last rotation, and when it stops working (rotate-secret).
    old_secret_hash: str | None = None
    old_secret_expires_at: int | None = None
    created_at: int = 0
    secret_rotated_at: int | None = None
    # Sessions with a second factor only (acr mfa): /authorize asks a signed-in user with a
    # factor for it, and refuses one without (access_denied).
    require_mfa: bool = False
    # RFC 9449 §5: /token refuses this client's requests without a DPoP proof.
    dpop_bound_access_tokens: bool = False
    # RFC 7591: how the client registered itself ("open" or "token"; None: an operator made it),
    # the SHA-256 of its RFC 7592 registration access token, and the metadata members kept
    # without acting on them (client_uri, logo_uri, ...), as (name, value) pairs.
    registration: str | None = None
    registration_token_hash: str | None = None
    client_metadata: tuple[tuple[str, str], ...] = ()
    # A third-party client: its users are to be asked before it gets their authorization
    # (every registered client).
    consent: bool = False
    # RFC 8707 resources the client may name (Hydra's per-client `audience`); empty: any
    # registered resource. Set by operators only (docs/resources.md).
    resources: tuple[str, ...] = ()
    # A client ID metadata document's client (registration "document", its client_id the
    # document's URL): until when the document fetched last is fresh (metadata_documents/).
    document_expires_at: int | None = None

    @property
    def is_public(self) -> bool:
        return self.secret_hash is None

    @property
    def display_name(self) -> str:
        """What a person is shown: the registered name, else the id."""
        return self.client_name or self.client_id

    def as_of(self, now: int) -> Client:
        """This client with an old secret past its window forgotten."""
        if self.old_secret_hash is None:
            return self
        if self.old_secret_expires_at is not None and now < self.old_secret_expires_at:
            return self
        return replace(self, old_secret_hash=None, old_secret_expires_at=None)


@dataclass(frozen=True)
class ClientChanges:
    """A PATCH: None leaves a field as it is."""

    grant_types: tuple[str, ...] | None = None
    scopes: tuple[str, ...] | None = None
    refresh_delivery: RefreshDelivery | None = None
    disabled: bool | None = None
    redirect_uris: tuple[str, ...] | None = None
    post_logout_redirect_uris: tuple[str, ...] | None = None
    client_name: str | None = None  # "": remove the name
    allowed_origins: tuple[str, ...] | None = None
    require_mfa: bool | None = None
    dpop_bound_access_tokens: bool | None = None
    client_metadata: tuple[tuple[str, str], ...] | None = None  # RFC 7592 PUT replaces it
    resources: tuple[str, ...] | None = None  # (): any registered resource again
    # Every access token the client holds until now is revoked (tokens_revoked_before), as a
    # disabling does: set when the admin scope is taken from it
    # (actions/admin/clients.update_client).
    revoke_tokens: bool = False


@dataclass(frozen=True)
class ClientCredentials:
    """What the request said about the client, before anything is checked."""

    client_id: str | None
    secret: str | None


# What a document client's store records when it saves it: (the client before, or None when
# new; the client after) -> events.
DocumentAudit = Callable[["Client | None", "Client"], Sequence[AuditEvent]]


class ClientStore(Protocol):
    async def get(self, client_id: str) -> Client | None:
        """The client, unless deleted. A cache may answer from memory."""
        ...

    async def fresh(self, client_id: str) -> Client | None:
        """As `get`, but read from the database now (a cache refreshes its memory)."""
        ...

    async def create(self, client: Client, now: int) -> bool:
        """Stores a new client; False when the client_id is taken."""
        ...

    async def save_document(
        self, client: Client, now: int, audit: DocumentAudit | None = None
    ) -> Client | None:
        """Stores a client ID metadata document's client (metadata_documents/): a new row, or
        the metadata and `document_expires_at` of the document client already there (its
        disabled flag stays), the row locked while it changes. The client as stored; None
        when the id was deleted. An operator's client of that id is left as it is (and
        answered). `audit(before, after)` (before: None when this made the row) gives the
        events recorded in the same transaction."""
        ...

    async def scopes_in_use(self) -> list[str]:
        """Every scope some client may ask for, sorted (for the metadata document)."""
        ...

    async def origins_in_use(self) -> frozenset[str]:
        """Every allowed origin of an enabled client (CORS answers them). A cache may answer
        from memory."""
        ...

    async def page(self, limit: int, after: str | None, prefix: str | None = None) -> list[Client]:
        """Clients not deleted, by client_id, those after `after` only (and whose client_id
        starts with `prefix`)."""
        ...

    async def update(
        self, client_id: str, changes: ClientChanges, now: int, audit: Sequence[AuditEvent]
    ) -> Client | None:
        """Applies `changes` and appends `audit` in one transaction; None when no such client.
        Disabling, or `revoke_tokens`, marks every access token issued until `now` revoked
        (tokens_revoked_before).
        Re-enabling moves that mark to cover what instances still remembering the client as
        enabled issued in the CLIENT_MEMORY_SECONDS after it, never past `now` - 1: nothing
        issued before comes back, and a token issued after the re-enabling lives."""
        ...

    async def rotate_secret(
        self, client_id: str, new_hash: str, old_expires_at: int, now: int, audit: AuditEvent
    ) -> bool:
        """Makes `new_hash` the secret and keeps the current one until `old_expires_at`, in one
        statement with `audit`; False when no such confidential client."""
        ...

    async def delete(self, client_id: str, now: int, audit: AuditEvent) -> bool:
        """Marks the client deleted (its id stays taken), forgets its secrets and revokes its
        access tokens issued until `now`; False when no such client."""
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
        self,
        store: ClientStore,
        clock: Callable[[], int],
        ttl: int = CLIENT_MEMORY_SECONDS,
        size: int = 1024,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._found: dict[str, tuple[int, Client]] = {}
        # Every client's allowed origins in one set, read again with any client's change.
        self._origins: tuple[int, frozenset[str]] | None = None

    async def get(self, client_id: str) -> Client | None:
        now = self._clock()
        hit = self._found.get(client_id)
        if hit is not None and now < hit[0]:
            return hit[1].as_of(now)
        return await self.fresh(client_id)

    async def fresh(self, client_id: str) -> Client | None:
        now = self._clock()
        client = await self._store.fresh(client_id)
        if client is None:
            self._found.pop(client_id, None)
            return None
        if len(self._found) >= self._size and client_id not in self._found:
            del self._found[next(iter(self._found))]  # the oldest entry
        self._found[client_id] = (now + self._ttl, client)
        return client.as_of(now)

    def forget(self, client_id: str | None = None) -> None:
        """A client changed (None: any may have): the next lookup asks the store."""
        self._origins = None
        if client_id is None:
            self._found.clear()
        else:
            self._found.pop(client_id, None)

    async def create(self, client: Client, now: int) -> bool:
        return await self._store.create(client, now)

    async def save_document(
        self, client: Client, now: int, audit: DocumentAudit | None = None
    ) -> Client | None:
        saved = await self._store.save_document(client, now, audit)
        self.forget(client.client_id)
        return saved

    async def scopes_in_use(self) -> list[str]:
        return await self._store.scopes_in_use()

    async def origins_in_use(self) -> frozenset[str]:
        # Asked by CORS for every request from a page whose origin is not in the settings:
        # remembered as the clients are, and forgotten with any client's change.
        now = self._clock()
        if self._origins is not None and now < self._origins[0]:
            return self._origins[1]
        origins = await self._store.origins_in_use()
        self._origins = (now + self._ttl, origins)
        return origins

    # The operator's changes go straight through and drop this process's memory of the
    # client; other processes see them within `ttl` (API.md: "at once" for introspection,
    # which reads the database, not this memory).

    async def page(self, limit: int, after: str | None, prefix: str | None = None) -> list[Client]:
        return await self._store.page(limit, after, prefix)

    async def update(
        self, client_id: str, changes: ClientChanges, now: int, audit: Sequence[AuditEvent]
    ) -> Client | None:
        self.forget(client_id)
        return await self._store.update(client_id, changes, now, audit)

    async def rotate_secret(
        self, client_id: str, new_hash: str, old_expires_at: int, now: int, audit: AuditEvent
    ) -> bool:
        self._found.pop(client_id, None)
        return await self._store.rotate_secret(client_id, new_hash, old_expires_at, now, audit)

    async def delete(self, client_id: str, now: int, audit: AuditEvent) -> bool:
        self.forget(client_id)
        return await self._store.delete(client_id, now, audit)


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
    named = await clients.get(credentials.client_id) if credentials.client_id else None
    return await authenticate_named(
        clients, credentials, named, require_confidential=require_confidential
    )


async def authenticate_named(
    clients: ClientStore,
    credentials: ClientCredentials,
    named: Client | None,
    *,
    require_confidential: bool = False,
) -> Client:
    """As authenticate_client, with the client the credentials name already looked up by the
    caller (`clients.get`; None when unknown), so one request looks it up once."""
    if not credentials.client_id:
        raise InvalidClient(detail="no client_id")
    client = named
    if client is not None and client.is_public:
        if credentials.secret is not None:
            raise InvalidClient(detail="public client sent a secret")
        if require_confidential:
            raise InvalidClient("This endpoint needs a confidential client.")
        if client.disabled:
            raise InvalidClient(detail="client disabled")
        return client
    presented = hash_secret(credentials.secret or "")
    if client is not None and not _secret_matches(client, presented):
        # A secret rotated on another instance is not in this one's memory yet: a mismatch
        # is checked again against the database, so a new secret is never refused.
        client = await clients.fresh(client.client_id)
    matched = _secret_matches(client, presented) if client is not None else False
    if not matched or client is None or credentials.secret is None:
        raise InvalidClient(detail="unknown client or wrong secret")
    if client.disabled:
        raise InvalidClient(detail="client disabled")
    return client


def _secret_matches(client: Client, presented: str) -> bool:
    """Constant time, and both the current and the old secret are always compared."""
    current = hmac.compare_digest(presented, client.secret_hash or _NO_SUCH_SECRET)
    old = hmac.compare_digest(presented, client.old_secret_hash or _NO_SUCH_SECRET)
    return (current or old) and client.secret_hash is not None


@dataclass(frozen=True)
class ClientMetadata:
    """What a client may be registered with, checked by `check_metadata` as one whole."""

    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    refresh_delivery: RefreshDelivery
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    client_name: str | None
    allowed_origins: tuple[str, ...]
    dpop_bound_access_tokens: bool
    resources: tuple[str, ...]

    def as_fields(self) -> dict[str, Any]:
        """These fields by name, as Client(...) and replace(client, ...) take them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class BadRedirectUri(InvalidRequest):
    """A redirect URI broke a rule: invalid_request to an operator, invalid_redirect_uri to a
    registering client (RFC 7591 §3.2.2)."""


def check_metadata(
    client_id: str,
    public: bool,
    *,
    grant_types: Sequence[str],
    scopes: Sequence[str],
    refresh_delivery: object = "body",
    redirect_uris: Sequence[str] = (),
    post_logout_redirect_uris: Sequence[str] = (),
    client_name: object = None,
    allowed_origins: Sequence[str] = (),
    require_mfa: bool = False,
    dpop_bound_access_tokens: object = False,
    resources: Sequence[str] = (),
    registered_resources: Collection[str] = (),
) -> ClientMetadata:
    """The one validator of a client's metadata, whoever registers it: an operator (admin API,
    CLI: a creation, or a PATCH as the client would be after it) or the client itself (RFC 7591
    /register and RFC 7592 PUT, after their own policy). `registered_resources`: those of
    `resources` the registry holds (the caller looks them up). Raises InvalidRequest
    (BadRedirectUri for a redirect URI)."""
    if not isinstance(refresh_delivery, str):
        raise InvalidRequest("refresh_delivery must be body or cookie.")
    check_client_fields(client_id, list(grant_types), refresh_delivery)
    if not grant_types:
        raise InvalidRequest("grant_types must not be empty.")
    if not valid_scope_tokens(list(scopes)):
        raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    if public and "client_credentials" in grant_types:
        raise InvalidRequest("A public client cannot use client_credentials (RFC 6749 §4.4).")
    check_redirect_uris("redirect_uris", list(redirect_uris))
    check_redirect_uris("post_logout_redirect_uris", list(post_logout_redirect_uris))
    name = check_client_name(client_name)
    check_allowed_origins(list(allowed_origins))
    check_client_resources(list(resources), registered_resources)
    if "authorization_code" in grant_types and not redirect_uris:
        # Without one, every /authorize request of the client would end on the error page.
        raise BadRedirectUri("The authorization_code grant needs at least one redirect_uris.")
    if require_mfa and "password" in grant_types:
        # Only sessions with a second factor: the password grant has no second step (it
        # would hand out password-only sessions).
        raise InvalidRequest("A client with require_mfa cannot use the password grant.")
    if not isinstance(dpop_bound_access_tokens, bool):
        # RFC 9449 §5.2: "Boolean value specifying whether the client always uses DPoP".
        raise InvalidRequest("dpop_bound_access_tokens must be true or false.")
    return ClientMetadata(
        grant_types=tuple(dict.fromkeys(grant_types)),
        scopes=tuple(dict.fromkeys(scopes)),
        refresh_delivery="cookie" if refresh_delivery == "cookie" else "body",
        redirect_uris=tuple(dict.fromkeys(redirect_uris)),
        post_logout_redirect_uris=tuple(dict.fromkeys(post_logout_redirect_uris)),
        client_name=name,
        allowed_origins=tuple(dict.fromkeys(allowed_origins)),
        dpop_bound_access_tokens=dpop_bound_access_tokens,
        resources=tuple(dict.fromkeys(resources)),
    )


def check_client_fields(client_id: str, grant_types: list[str], delivery: str) -> None:
    if not client_id or len(client_id) > 128 or not client_id.isprintable() or " " in client_id:
        raise InvalidRequest("client_id must be 1 to 128 printable characters without spaces.")
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown:
        raise InvalidRequest(f"Unknown grant type: {unknown[0]}.")
    if delivery not in ("body", "cookie"):
        raise InvalidRequest("refresh_delivery must be body or cookie.")


def check_redirect_uris(name: str, uris: list[str]) -> None:
    """API.md, "Clients, added": absolute URIs, https (or http on a loopback host only), with no
    fragment. RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component."
    No user information either: `https://app.example@evil.example/` reads as one host to a
    person and is another to the browser."""
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise BadRedirectUri(f"Each of {name} must be {problem}.")


def redirect_uri_problem(uri: str) -> str | None:
    """What is wrong with `uri` as a redirect URI, as "must be ..." ends; None: nothing."""
    if len(uri) > MAX_REDIRECT_URI or not uri.isascii() or not uri.isprintable() or " " in uri:
        return f"at most {MAX_REDIRECT_URI} printable ASCII characters without spaces"
    if "#" in uri:
        return "without a fragment (RFC 6749 §3.1.2)"
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port  # port: ValueError when malformed
    except ValueError:
        return "an absolute URI"
    del port
    if parts.scheme not in ("https", "http") or not host or parts.netloc.startswith(":"):
        return "an absolute https URI"
    if "@" in parts.netloc:
        return "without user information"
    if parts.scheme == "http" and not loopback_host(host):
        return "https (http only on a loopback host: 127.0.0.1, [::1] or localhost)"
    return None


def check_client_name(name: object) -> str | None:
    """A name a person reads on the sign-in page: printable (no control characters, no line
    breaks), at most MAX_CLIENT_NAME characters, not blank. None or "" removes it. The pages
    escape it; this keeps it one short line."""
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise InvalidRequest("client_name must be a string.")
    if len(name) > MAX_CLIENT_NAME or not name.isprintable() or not name.strip():
        raise InvalidRequest(
            f"client_name must be 1 to {MAX_CLIENT_NAME} printable characters, not all spaces."
        )
    return name


def check_allowed_origins(origins: list[str]) -> None:
    """Each an origin as a browser sends it in `Origin` (RFC 6454 §6.2): scheme://host[:port],
    lower case, no path, no default port, so it can be compared as an exact string; https, or
    http on a loopback host only, as the redirect URIs. `null` (RFC 6454 §7.3: sandboxed
    pages, file: URLs) is no origin anyone can be told apart by, and is refused."""
    for origin in origins:
        problem = _origin_problem(origin)
        if problem is not None:
            raise InvalidRequest(f"Each of allowed_origins must be {problem}.")


def check_client_resources(resources: list[str], registered: Collection[str]) -> None:
    """Each a registered resource's identifier (RFC 8707): a list naming one that is not would
    restrict the client to a resource no token can be for, or name one registered later."""
    if len(resources) > MAX_CLIENT_RESOURCES:
        raise InvalidRequest(f"resources lists at most {MAX_CLIENT_RESOURCES} resources.")
    for resource in resources:
        problem = resource_problem(resource)
        if problem is not None:
            raise InvalidRequest(f"Each of resources must be well-formed: {problem}.")
        if resource not in registered:
            raise InvalidRequest("Each of resources must be a registered resource.")


def _origin_problem(origin: str) -> str | None:
    form = "an origin: scheme://host[:port], in lower case, with no path"
    if redirect_uri_problem(origin) is not None:
        return form + " (https, or http on a loopback host only)"
    parts = urlsplit(origin)
    if f"{parts.scheme}://{parts.netloc}" != origin or origin != origin.lower():
        return form
    if (parts.scheme, parts.port) in (("https", 443), ("http", 80)):
        return form + " and no default port"
    return None


def origin_allowed(client: Client | None, origin: str | None, everyone: Sequence[str]) -> bool:
    """May a page at `origin` use the cookie endpoints (of `client`, when the request names
    one)? The settings' origins serve every client; a client's own serve it alone."""
    if origin is None:
        return False
    return origin in everyone or (client is not None and origin in client.allowed_origins)


def page_of_public_client(client: Client | None, origin: str) -> bool:
    """Is `origin` a page of this public client: one of its `allowed_origins`, or the origin
    (scheme, host, port) of one of its redirect URIs, where its code comes back to? Such a page
    may read the client's own answers at /token and /revoke, without credentials
    (http/cors.py). A confidential client's secret has no place in a page, so none of its."""
    if client is None or not client.is_public or client.disabled:
        return False
    return origin in client.allowed_origins or origin in map(origin_of, client.redirect_uris)


def origin_of(uri: str) -> str | None:
    """The origin a browser names in `Origin` for a page at `uri` (RFC 6454 §6.1: lower case,
    the port only when not the scheme's default); None for other schemes than http(s)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    scheme = parts.scheme.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"
