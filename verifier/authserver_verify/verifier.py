"""Verifying authserver access tokens in a resource server, offline, from the published JWKS.

PyJWT (for JWK parsing), cryptography and the standard library only: no database, no web
framework, nothing of the server.

    verifier = Verifier("https://auth.example", "my-api")
    claims = verifier.verify(token)            # or: await verifier.verify_async(token)

Every refusal is an `InvalidToken` (see `authserver_verify.errors` for the tree); the checks
that need no key are `authserver_verify.jose`'s, shared with the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from authserver_verify.errors import (
    BadSignature,
    Expired,
    KeySetUnavailable,
    MissingClaim,
    NotYetValid,
    Revoked,
    UnacceptableHeader,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from authserver_verify.jose import (
    KEY_TYPES,
    check_size,
    parse_access_token,
    reject_duplicate_members,
)

__all__ = [
    "DEFAULT_REQUIRED",
    "MAX_DOCUMENT_BYTES",
    "Fetch",
    "Fetched",
    "PublicKey",
    "Verifier",
    "parse_jwks",
    "urllib_fetch",
]

# The name it had inside the server package: logging set up for it keeps working.
logger = logging.getLogger("authserver.verify")

MAX_DOCUMENT_BYTES = 1024 * 1024
DEFAULT_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti")
# With no key set at all, a failed fetch is retried at most this often (seconds).
_EMPTY_RETRY = 1.0

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Fetched:
    status: int  # 200 or 304
    body: bytes
    etag: str | None
    max_age: int | None


Fetch = Callable[[str, dict[str, str]], Fetched]


def urllib_fetch(timeout: float = 5.0) -> Fetch:
    """A GET through urllib: redirects are not followed, only 200 and 304 are answers."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))

    def fetch(url: str, headers: dict[str, str]) -> Fetched:
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read(MAX_DOCUMENT_BYTES + 1)
                status, response_headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            if exc.code != 304:
                raise OSError(f"HTTP {exc.code} from {url}") from None
            status, body, response_headers = 304, b"", exc.headers
        if len(body) > MAX_DOCUMENT_BYTES:
            raise OSError(f"document from {url} is too large")
        return Fetched(
            status,
            body,
            response_headers.get("ETag"),
            _max_age(response_headers.get("Cache-Control")),
        )

    return fetch


def _max_age(cache_control: str | None) -> int | None:
    if not cache_control:
        return None
    directives = [d.strip().lower() for d in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and value.strip().isdigit():
            return int(value.strip())
    return None


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class _Key:
    alg: str
    public_key: PublicKey


@dataclass(frozen=True)
class _KeySet:
    keys: dict[str, _Key]
    etag: str | None
    fresh_until: float  # monotonic


def parse_jwks(body: bytes) -> dict[str, _Key]:
    """The usable signing keys of a JWK Set; keys we cannot use are skipped, not fatal."""
    document = json.loads(body, object_pairs_hook=reject_duplicate_members)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, _Key] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if not isinstance(kid, str) or alg not in KEY_TYPES or jwk.get("kty") != KEY_TYPES[alg]:
            continue
        if jwk.get("use", "sig") != "sig" or "d" in jwk or "p" in jwk:
            continue  # an encryption key, or a private key published by mistake
        try:
            public_key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if isinstance(public_key, rsa.RSAPublicKey):
            if alg != "RS256" or public_key.key_size < 2048:
                continue
        elif not (isinstance(public_key, ed25519.Ed25519PublicKey) and alg == "EdDSA"):
            continue
        keys[kid] = _Key(alg, public_key)
    return keys


class _JwksCache:
    """The issuer's keys: honours max-age and ETag, refetches once per cooldown for an unknown
    kid, serves the last good set while the issuer is down, and fetches single-flight."""

    def __init__(
        self,
        url: Callable[[], str],
        fetch: Fetch,
        *,
        cooldown: float,
        default_max_age: int,
        min_max_age: int,
        max_max_age: int,
        clock: Callable[[], float],
    ) -> None:
        self._url = url
        self._fetch = fetch
        self._cooldown = cooldown
        self._default_max_age = default_max_age
        self._min_max_age = min_max_age
        self._max_max_age = max_max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._set: _KeySet | None = None
        self._generation = 0
        self._last_attempt = float("-inf")
        self.fetches = 0  # requests made, 304s included (for tests and metrics)

    @property
    def current(self) -> _KeySet | None:
        return self._set

    def is_fresh(self) -> bool:
        keys = self._set
        return keys is not None and keys.fresh_until > self._clock()

    def lookup(self, kid: str) -> _Key | None:
        """No I/O: the key; None when a fetch is due; UnknownKey when none is allowed yet."""
        keys, now = self._set, self._clock()
        if keys is None or keys.fresh_until <= now:
            return None
        found = keys.keys.get(kid)
        if found is None:
            if now - self._last_attempt >= self._cooldown:
                return None
            raise UnknownKey()
        return found

    def get(self, kid: str) -> _Key:
        """The key for `kid`, fetching if the set is stale or lacks it (blocking)."""
        generation = self._generation
        found = self.lookup(kid)
        if found is not None:
            return found
        self._refresh(generation)
        keys = self._set
        if keys is None:
            raise KeySetUnavailable()
        found = keys.keys.get(kid)
        if found is None:
            raise UnknownKey()
        return found

    def _refresh(self, seen_generation: int) -> None:
        with self._lock:
            # Single flight: whoever waited here while another thread fetched uses its result.
            if self._generation != seen_generation:
                return
            now, previous = self._clock(), self._set
            if previous is None:
                if now - self._last_attempt < _EMPTY_RETRY:
                    return
            elif previous.fresh_until > now and now - self._last_attempt < self._cooldown:
                return  # an unknown kid, and we refetched for one less than a cooldown ago
            self._last_attempt = now
            try:
                self._set = self._fetch_set(previous)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the last good set
                logger.warning("JWKS fetch failed (%s); keeping the last good key set", exc)
                if previous is not None:
                    # Try again after the cooldown, not on every request.
                    self._set = _KeySet(previous.keys, previous.etag, now + self._cooldown)
            finally:
                self._generation += 1

    def _fetch_set(self, previous: _KeySet | None) -> _KeySet:
        headers = {"If-None-Match": previous.etag} if previous and previous.etag else {}
        self.fetches += 1
        fetched = self._fetch(self._url(), headers)
        if fetched.status == 304 and previous is not None:
            keys, etag = previous.keys, fetched.etag or previous.etag
        elif fetched.status == 200:
            keys, etag = parse_jwks(fetched.body), fetched.etag
        else:
            raise OSError(f"unexpected status {fetched.status}")
        max_age = self._default_max_age if fetched.max_age is None else fetched.max_age
        max_age = min(max(max_age, self._min_max_age), self._max_max_age)
        return _KeySet(keys, etag, self._clock() + max_age)


# --------------------------------------------------------------------------- revocations


@dataclass(frozen=True)
class _Revocations:
    sids: frozenset[str] = frozenset()
    jtis: frozenset[str] = frozenset()
    etag: str | None = None
    # client_id -> its tokens issued at or before this time are revoked (a client disabled
    # or deleted: its client_credentials tokens have no sid). Absent from older servers.
    clients: Mapping[str, int] = field(default_factory=dict)


class _RevocationFeed:
    def __init__(self, url: str, fetch: Fetch, authorization: str) -> None:
        self._url = url
        self._fetch = fetch
        self._authorization = authorization
        self._lock = threading.Lock()
        self.current = _Revocations()
        self.polls = 0
        self.last_success: float | None = None

    def poll(self) -> int | None:
        """Fetches the feed once; returns the server's max-age (None when it did not say)."""
        with self._lock:
            headers = {"Authorization": self._authorization}
            if self.current.etag:
                headers["If-None-Match"] = self.current.etag
            self.polls += 1
            fetched = self._fetch(self._url, headers)
            if fetched.status == 200:
                document = json.loads(fetched.body, object_pairs_hook=reject_duplicate_members)
                sids, jtis = document.get("sids"), document.get("jtis")
                clients = document.get("clients", {})
                if not _strings(sids) or not _strings(jtis) or not _client_marks(clients):
                    raise ValueError("malformed revocation feed")
                self.current = _Revocations(
                    frozenset(sids), frozenset(jtis), fetched.etag, dict(clients)
                )
            elif fetched.status != 304:
                raise OSError(f"unexpected status {fetched.status}")
            self.last_success = time.monotonic()
            return fetched.max_age


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _client_marks(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    )


# --------------------------------------------------------------------------- the verifier


@dataclass
class _Cached:
    claims: dict[str, Any]
    kid: str
    exp: float


@dataclass
class _ClaimsCache:
    """Verified claims by token hash, least recently used first out."""

    size: int
    entries: OrderedDict[bytes, _Cached] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, digest: bytes) -> _Cached | None:
        with self.lock:
            entry = self.entries.get(digest)
            if entry is not None:
                self.entries.move_to_end(digest)
            return entry

    def put(self, digest: bytes, entry: _Cached) -> None:
        if self.size <= 0:
            return
        with self.lock:
            self.entries[digest] = entry
            self.entries.move_to_end(digest)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def drop(self, digest: bytes) -> None:
        with self.lock:
            self.entries.pop(digest, None)


class Verifier:
    """Verifies access tokens of one issuer for one audience. Thread- and task-safe.

    `jwks_url` defaults to the one named by `discovery_url`, which defaults to the issuer's
    RFC 8414 metadata. `leeway` (seconds) absorbs clock skew on exp, nbf and iat.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        discovery_url: str | None = None,
        *,
        leeway: int = 30,
        required_claims: Iterable[str] = DEFAULT_REQUIRED,
        unknown_kid_cooldown: float = 30.0,
        default_max_age: int = 300,
        min_max_age: int = 0,
        max_max_age: int = 86_400,
        cache_size: int = 10_000,
        revocations_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        poll_interval: float = 10.0,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.required_claims = tuple(required_claims)
        self.poll_interval = poll_interval
        self._clock = clock
        self._fetch = fetch or urllib_fetch()
        self._discovery_url = discovery_url or (
            issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
        )
        self._jwks_url = jwks_url
        self._discovery_lock = threading.Lock()
        self.keys = _JwksCache(
            self._resolve_jwks_url,
            self._fetch,
            cooldown=unknown_kid_cooldown,
            default_max_age=default_max_age,
            min_max_age=min_max_age,
            max_max_age=max_max_age,
            clock=monotonic,
        )
        self._cache = _ClaimsCache(cache_size)
        self.revocations: _RevocationFeed | None = None
        if revocations_url is not None:
            if not client_id or client_secret is None:
                raise ValueError("the revocation feed needs client_id and client_secret")
            self.revocations = _RevocationFeed(
                revocations_url, self._fetch, _basic(client_id, client_secret)
            )
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    # ----------------------------------------------------------------- public API

    @staticmethod
    def has_roles(claims: dict[str, Any], *needed: str, any_of: bool = False) -> bool:
        """Whether the user of verified `claims` holds every role named (with `any_of`: at
        least one). Roles are the token's `roles` claim (RFC 9068 §2.2.3.1), which the
        issuer sets when its user has any; `verify` has checked it is a list of strings."""
        roles = claims.get("roles")
        held = set(roles) if isinstance(roles, list) else set()
        return bool(held.intersection(needed)) if any_of else held.issuperset(needed)

    @staticmethod
    def authentication_shortfall(
        claims: dict[str, Any],
        *,
        acr: Collection[str] = (),
        max_age: int | None = None,
        now: float,
    ) -> tuple[str, ...]:
        """What the user's sign-in behind verified `claims` lacks for a requirement (RFC 9470
        §3): `"acr"` when `acr` names values and the token's `acr` is none of them, `"max_age"`
        when more than `max_age` seconds passed since its `auth_time`; () when it meets it. A
        token without the claims (not from a user's browser sign-in) lacks what is asked."""
        lacking: list[str] = []
        if acr and claims.get("acr") not in acr:
            lacking.append("acr")
        if max_age is not None:
            auth_time = claims.get("auth_time")
            if (
                not isinstance(auth_time, int | float)
                or isinstance(auth_time, bool)
                or now - auth_time > max_age
            ):
                lacking.append("max_age")
        return tuple(lacking)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or an InvalidToken subclass. May block on a JWKS fetch."""
        return self._verify(token, self.keys.get)

    async def verify_async(self, token: str) -> dict[str, Any]:
        """As `verify`; a JWKS fetch, when one is needed, runs in a worker thread."""
        try:
            return self._verify(token, self._key_without_io)
        except _NeedsFetch as need:
            await asyncio.to_thread(self.keys.get, need.kid)
        return await asyncio.to_thread(self._verify, token, self.keys.get)

    def poll_revocations(self) -> None:
        """Fetches the revocation feed once (blocking); raises OSError/ValueError on failure."""
        if self.revocations is None:
            raise RuntimeError("no revocations_url configured")
        self.revocations.poll()

    def start(self) -> None:
        """Starts polling the revocation feed in a daemon thread (no-op without a feed)."""
        if self.revocations is None or self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll_forever, name="authserver-revocations", daemon=True
        )
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None

    def __enter__(self) -> Verifier:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _poll_forever(self) -> None:
        assert self.revocations is not None
        while not self._stop.is_set():
            try:
                self.revocations.poll()
            except Exception as exc:  # noqa: BLE001 - keep the last list, try again later
                logger.warning("revocation feed poll failed (%s)", exc)
            self._stop.wait(self.poll_interval)

    def _key_without_io(self, kid: str) -> _Key:
        key = self.keys.lookup(kid)
        if key is None:
            raise _NeedsFetch(kid)
        return key

    def _verify(self, token: str, key_for: Callable[[str], _Key]) -> dict[str, Any]:
        check_size(token)  # before the hash: an unbounded token would cost unbounded work
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        cached = self._cache.get(digest)
        now = self._clock()
        if cached is not None:
            # A stale key set falls through to a full verification, which refreshes it: a key
            # the issuer withdrew takes its cached tokens with it.
            current = self.keys.current
            if (
                cached.exp > now - self.leeway
                and self.keys.is_fresh()
                and current is not None
                and cached.kid in current.keys
            ):
                self._check_revocation(cached.claims)
                return dict(cached.claims)
            self._cache.drop(digest)
        jws = parse_access_token(token)
        key = key_for(jws.kid)
        if key.alg != jws.alg:
            raise UnacceptableHeader(detail="alg is not the key's")
        _check_signature(key, jws.signing_input, jws.signature)
        exp = self._check_claims(jws.claims, now)
        self._check_revocation(jws.claims)
        self._cache.put(digest, _Cached(jws.claims, jws.kid, exp))
        return dict(jws.claims)

    def _check_claims(self, claims: dict[str, Any], now: float) -> float:
        for name in self.required_claims:
            if name not in claims:
                raise MissingClaim()
        for name in ("sub", "jti", "sid", "client_id", "scope"):
            if name in claims and not isinstance(claims[name], str):
                raise MissingClaim()
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise MissingClaim(detail="roles must be a list of strings")
        if claims.get("iss") != self.issuer:
            raise WrongIssuer()
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.audience not in audiences:
            raise WrongAudience()
        exp = _numeric(claims, "exp")
        if exp is None:
            raise MissingClaim()
        if exp <= now - self.leeway:
            raise Expired()
        nbf, iat = _numeric(claims, "nbf"), _numeric(claims, "iat")
        if (nbf is not None and nbf > now + self.leeway) or (
            iat is not None and iat > now + self.leeway
        ):
            raise NotYetValid()
        return exp

    def _check_revocation(self, claims: dict[str, Any]) -> None:
        if self.revocations is None:
            return
        current = self.revocations.current
        if claims.get("jti") in current.jtis or claims.get("sid") in current.sids:
            raise Revoked()
        client_id = claims.get("client_id")
        mark = current.clients.get(client_id) if isinstance(client_id, str) else None
        if mark is not None and not (isinstance(claims.get("iat"), int) and claims["iat"] > mark):
            raise Revoked()

    def _resolve_jwks_url(self) -> str:
        if self._jwks_url is not None:
            return self._jwks_url
        with self._discovery_lock:
            if self._jwks_url is None:
                fetched = self._fetch(self._discovery_url, {})
                if fetched.status != 200:
                    raise OSError("discovery document unavailable")
                metadata = json.loads(fetched.body, object_pairs_hook=reject_duplicate_members)
                # RFC 8414 §3.3: the issuer in the metadata MUST be identical to the issuer
                # the metadata was looked up for.
                if not isinstance(metadata, dict) or metadata.get("issuer") != self.issuer:
                    raise ValueError("discovery document names another issuer")
                jwks_uri = metadata.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise ValueError("discovery document has no jwks_uri")
                self._jwks_url = jwks_uri
            return self._jwks_url


class _NeedsFetch(Exception):
    def __init__(self, kid: str) -> None:
        super().__init__()
        self.kid = kid


def _check_signature(key: _Key, signing_input: bytes, signature: bytes) -> None:
    try:
        if isinstance(key.public_key, rsa.RSAPublicKey):
            key.public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.public_key.verify(signature, signing_input)
    except InvalidSignature:
        raise BadSignature() from None


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MissingClaim()
    return float(value)


def _basic(client_id: str, client_secret: str) -> str:
    # RFC 6749 §2.3.1: the id and secret are form-urlencoded before they are joined.
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()
