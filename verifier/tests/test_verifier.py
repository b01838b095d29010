"""The Verifier against a fake issuer: key cache, hostile tokens, errors, concurrency."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import authserver_verify as verify
from authserver_verify import Fetched, Verifier
from authserver_verify.verifier import parse_jwks

ISSUER = "https://issuer.test"
AUDIENCE = "orders"
NOW = 1_800_000_000
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ED = ed25519.Ed25519PrivateKey.generate()


def _jwk(kid: str, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeIssuer:
    """Serves a JWK Set (and a revocation feed) as a fetch function, counting requests."""

    keys: dict[str, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey] = field(
        default_factory=lambda: {"rsa-1": _RSA, "ed-1": _ED}
    )
    max_age: int | None = 300
    down: bool = False
    delay: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self) -> bytes:
        return json.dumps({"keys": [_jwk(k, v) for k, v in self.keys.items()]}).encode()

    def fetch(self, url: str, headers: dict[str, str]) -> Fetched:
        with self.lock:
            self.requests.append(headers)
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise OSError("connection refused")
        body = self.body()
        etag = '"' + str(hash(body)) + '"'
        status = 304 if headers.get("If-None-Match") == etag else 200
        self.statuses.append(status)
        return Fetched(status, body if status == 200 else b"", etag, self.max_age)

    def token(
        self,
        kid: str = "rsa-1",
        *,
        header: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        key = self.keys.get(kid, _RSA)
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "EdDSA"
        body = {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": AUDIENCE,
            "iat": NOW,
            "exp": NOW + 900,
            "jti": "jti-1",
            "client_id": "spa",
            "scope": "profile",
            "sid": "sid-1",
        }
        body.update(claims)
        for name in drop:
            body.pop(name)
        return jwt.encode(
            body, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt", **(header or {})}
        )


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


def make_verifier(issuer: FakeIssuer, monotonic: Monotonic, **options: Any) -> Verifier:
    return Verifier(
        ISSUER,
        AUDIENCE,
        jwks_url=f"{ISSUER}/jwks",
        fetch=issuer.fetch,
        clock=lambda: NOW + 10,
        monotonic=monotonic,
        **options,
    )


@pytest.fixture
def verifier(issuer: FakeIssuer, monotonic: Monotonic) -> Verifier:
    return make_verifier(issuer, monotonic)


@pytest.mark.parametrize("kid", ["rsa-1", "ed-1"])
def test_a_genuine_token_verifies(issuer: FakeIssuer, verifier: Verifier, kid: str) -> None:
    claims = verifier.verify(issuer.token(kid))
    assert claims["sub"] == "user-1"
    assert len(issuer.requests) == 1


def test_the_key_set_is_kept_for_max_age_then_revalidated_with_its_etag(
    issuer: FakeIssuer, verifier: Verifier, monotonic: Monotonic
) -> None:
    verifier.verify(issuer.token(jti="a"))
    monotonic.now += 299
    verifier.verify(issuer.token(jti="b"))
    assert len(issuer.requests) == 1

    monotonic.now += 2
    verifier.verify(issuer.token(jti="c"))

    assert len(issuer.requests) == 2
    assert issuer.requests[1]["If-None-Match"].startswith('"')
    assert issuer.statuses == [200, 304]
    monotonic.now += 299  # the 304 renewed the max-age
    verifier.verify(issuer.token(jti="d"))
    assert len(issuer.requests) == 2


def test_an_unknown_kid_refetches_once_per_cooldown(
    issuer: FakeIssuer, verifier: Verifier, monotonic: Monotonic
) -> None:
    verifier.verify(issuer.token())
    junk = [issuer.token(header={"kid": f"junk-{i}"}) for i in range(50)]
    monotonic.now += 31  # the first fetch is older than the cooldown
    for token in junk:
        with pytest.raises(verify.UnknownKey):
            verifier.verify(token)
    assert len(issuer.requests) == 2

    monotonic.now += 31
    with pytest.raises(verify.UnknownKey):
        verifier.verify(junk[0])
    assert len(issuer.requests) == 3


def test_a_new_key_is_found_by_the_refetch(
    issuer: FakeIssuer, verifier: Verifier, monotonic: Monotonic
) -> None:
    verifier.verify(issuer.token())
    issuer.keys["rsa-2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    monotonic.now += 31
    assert verifier.verify(issuer.token("rsa-2"))["sub"] == "user-1"


def test_the_last_good_set_is_served_while_the_issuer_is_down(
    issuer: FakeIssuer, verifier: Verifier, monotonic: Monotonic
) -> None:
    verifier.verify(issuer.token(jti="a"))
    issuer.down = True
    monotonic.now += 301
    for jti in "bcdef":
        assert verifier.verify(issuer.token(jti=jti))["jti"] == jti
    assert len(issuer.requests) == 2  # one failed attempt, then quiet for a cooldown
    monotonic.now += 31
    verifier.verify(issuer.token(jti="g"))
    assert len(issuer.requests) == 3


def test_no_key_set_at_all_is_not_the_tokens_fault(issuer: FakeIssuer, verifier: Verifier) -> None:
    issuer.down = True
    with pytest.raises(verify.KeySetUnavailable):
        verifier.verify(issuer.token())
    with pytest.raises(verify.KeySetUnavailable):
        verifier.verify(issuer.token())
    assert len(issuer.requests) == 1  # retried at most once a second


def test_a_withdrawn_key_takes_its_cached_tokens_with_it(
    issuer: FakeIssuer, verifier: Verifier, monotonic: Monotonic
) -> None:
    token = issuer.token()
    verifier.verify(token)
    del issuer.keys["rsa-1"]
    monotonic.now += 301
    with pytest.raises(verify.UnknownKey):
        verifier.verify(token)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _psychic(issuer: FakeIssuer) -> str:
    # CVE-2022-21449: an ECDSA signature (r, s) = (0, 0) that broken verifiers accept.
    genuine = issuer.token()
    header = _b64(json.dumps({"alg": "ES256", "kid": "rsa-1", "typ": "at+jwt"}).encode())
    return f"{header}.{genuine.split('.')[1]}.{_b64(bytes(64))}"


def _hostile(issuer: FakeIssuer) -> dict[str, tuple[str, type[verify.VerificationError]]]:
    genuine = issuer.token()
    head, payload, signature = genuine.split(".")
    none_header = _b64(json.dumps({"alg": "none", "kid": "rsa-1", "typ": "at+jwt"}).encode())
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    dup_payload = _b64(b'{"sub":"user-1","sub":"admin"}')
    return {
        "none": (f"{none_header}.{payload}.", verify.MalformedToken),
        "none_with_signature": (f"{none_header}.{payload}.{signature}", verify.UnacceptableHeader),
        "hs256": (
            jwt.encode({"sub": "x"}, "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"}),
            verify.UnacceptableHeader,
        ),
        "jku": (issuer.token(header={"jku": "https://evil/jwks"}), verify.UnacceptableHeader),
        "jwk": (issuer.token(header={"jwk": _jwk("x", _RSA)}), verify.UnacceptableHeader),
        "x5u": (issuer.token(header={"x5u": "https://evil/cert"}), verify.UnacceptableHeader),
        "x5c": (issuer.token(header={"x5c": ["MIIB"]}), verify.UnacceptableHeader),
        "crit": (issuer.token(header={"crit": ["exp"]}), verify.UnacceptableHeader),
        "wrong_typ": (issuer.token(header={"typ": "JWT"}), verify.UnacceptableHeader),
        "alg_not_the_keys": (
            issuer.token("ed-1", header={"kid": "rsa-1"}),
            verify.UnacceptableHeader,
        ),
        "psychic_ecdsa": (_psychic(issuer), verify.UnacceptableHeader),
        "es256_real": (
            jwt.encode({"sub": "x"}, ec_key, algorithm="ES256", headers={"kid": "rsa-1"}),
            verify.UnacceptableHeader,
        ),
        "other_key": (
            jwt.encode(
                jwt.decode(genuine, options={"verify_signature": False}),
                attacker,
                algorithm="RS256",
                headers={"kid": "rsa-1", "typ": "at+jwt"},
            ),
            verify.BadSignature,
        ),
        "tampered_payload": (
            f"{head}.{_b64(json.dumps({'sub': 'admin'}).encode())}.{signature}",
            verify.BadSignature,
        ),
        "unknown_kid": (issuer.token(header={"kid": "nope"}), verify.UnknownKey),
        "expired": (issuer.token(exp=NOW - 21), verify.Expired),
        "future_nbf": (issuer.token(nbf=NOW + 41), verify.NotYetValid),
        "future_iat": (issuer.token(iat=NOW + 41), verify.NotYetValid),
        "wrong_iss": (issuer.token(iss="https://evil"), verify.WrongIssuer),
        "wrong_aud": (issuer.token(aud="billing"), verify.WrongAudience),
        "no_exp": (issuer.token(drop=("exp",)), verify.MissingClaim),
        "no_jti": (issuer.token(drop=("jti",)), verify.MissingClaim),
        "string_exp": (issuer.token(exp=str(NOW + 900)), verify.MissingClaim),
        "duplicate_members": (f"{head}.{dup_payload}.{signature}", verify.MalformedToken),
        "garbage": ("not a token at all", verify.MalformedToken),
        "four_segments": (genuine + ".x", verify.MalformedToken),
        "huge": (genuine + "A" * 9000, verify.MalformedToken),
        "not_json": (f"{_b64(b'nope')}.{payload}.{signature}", verify.MalformedToken),
        "array_header": (f"{_b64(b'[1]')}.{payload}.{signature}", verify.MalformedToken),
    }


def test_every_hostile_token_is_refused_with_a_message_that_does_not_echo_it(
    issuer: FakeIssuer, verifier: Verifier
) -> None:
    assert verifier.verify(issuer.token())  # the control
    for name, (token, expected) in _hostile(issuer).items():
        with pytest.raises(verify.InvalidToken) as caught:
            verifier.verify(token)
        assert type(caught.value) is expected, name
        text = str(caught.value) + repr(caught.value)
        assert not any(len(part) > 3 and part in text for part in token.split(".")), name


def test_leeway_is_honoured(issuer: FakeIssuer, verifier: Verifier) -> None:
    # The verifier's clock says NOW + 10; its leeway is 30 s.
    assert verifier.verify(issuer.token(exp=NOW - 19, jti="a"))
    assert verifier.verify(issuer.token(nbf=NOW + 39, jti="b"))


def test_claims_are_cached_by_token_until_exp(
    issuer: FakeIssuer, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.token()
    verifier.verify(token)
    checks: list[object] = []
    monkeypatch.setattr("authserver_verify.verifier._check_signature", lambda *a: checks.append(a))
    claims = verifier.verify(token)
    claims["sub"] = "mutated"
    assert verifier.verify(token)["sub"] == "user-1"
    assert checks == []


def test_an_expired_cached_token_is_refused(issuer: FakeIssuer, monotonic: Monotonic) -> None:
    clock = [NOW + 10.0]
    verifier = Verifier(
        ISSUER,
        AUDIENCE,
        jwks_url="x",
        fetch=issuer.fetch,
        clock=lambda: clock[0],
        monotonic=monotonic,
    )
    token = issuer.token()
    verifier.verify(token)
    clock[0] = NOW + 900 + 31
    with pytest.raises(verify.Expired):
        verifier.verify(token)


def test_the_claims_cache_is_bounded(issuer: FakeIssuer, monotonic: Monotonic) -> None:
    verifier = make_verifier(issuer, monotonic, cache_size=3)
    for i in range(10):
        verifier.verify(issuer.token(jti=str(i)))
    assert len(verifier._cache.entries) == 3


def test_cached_and_fresh_tokens_honour_the_revocation_list(
    issuer: FakeIssuer, monotonic: Monotonic
) -> None:
    feed: dict[str, list[str]] = {"sids": [], "jtis": []}

    def fetch(url: str, headers: dict[str, str]) -> Fetched:
        if url.endswith("/revocations"):
            assert headers["Authorization"].startswith("Basic ")
            return Fetched(200, json.dumps(feed).encode(), None, 5)
        return issuer.fetch(url, headers)

    verifier = Verifier(
        ISSUER,
        AUDIENCE,
        jwks_url="x",
        revocations_url=f"{ISSUER}/revocations",
        client_id="orders",
        client_secret="s3cret",
        fetch=fetch,
        clock=lambda: NOW,
        monotonic=monotonic,
    )
    cached = issuer.token(jti="cached", sid="s1")
    verifier.verify(cached)
    verifier.poll_revocations()
    assert verifier.verify(cached)

    feed["sids"] = ["s1"]
    feed["jtis"] = ["j2"]
    verifier.poll_revocations()
    with pytest.raises(verify.Revoked):
        verifier.verify(cached)
    with pytest.raises(verify.Revoked):
        verifier.verify(issuer.token(jti="j2", sid="s9"))
    assert verifier.verify(issuer.token(jti="j3", sid="s9"))


def test_a_client_listed_in_the_feed_loses_its_tokens_issued_until_its_mark(
    issuer: FakeIssuer, monotonic: Monotonic
) -> None:
    """A disabled or deleted client: its client_credentials tokens have no sid to list."""
    feed: dict[str, Any] = {"sids": [], "jtis": []}

    def fetch(url: str, headers: dict[str, str]) -> Fetched:
        if url.endswith("/revocations"):
            return Fetched(200, json.dumps(feed).encode(), None, 5)
        return issuer.fetch(url, headers)

    verifier = Verifier(
        ISSUER,
        AUDIENCE,
        jwks_url="x",
        revocations_url=f"{ISSUER}/revocations",
        client_id="orders",
        client_secret="s3cret",
        fetch=fetch,
        clock=lambda: NOW,
        monotonic=monotonic,
    )
    before = issuer.token(jti="a", client_id="svc", sub="svc", drop=("sid",))
    after = issuer.token(jti="b", client_id="svc", sub="svc", drop=("sid",), iat=NOW + 1)
    other = issuer.token(jti="c", client_id="spa")
    verifier.verify(before)  # cached before the feed says anything
    verifier.poll_revocations()
    assert verifier.verify(before)

    feed["clients"] = {"svc": NOW}
    verifier.poll_revocations()
    with pytest.raises(verify.Revoked):
        verifier.verify(before)
    assert verifier.verify(after) and verifier.verify(other)

    feed["clients"] = {"svc": "soon"}
    with pytest.raises(ValueError):
        verifier.poll_revocations()


def test_discovery_finds_the_jwks_and_refuses_another_issuer(
    issuer: FakeIssuer, monotonic: Monotonic
) -> None:
    metadata = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}
    seen: list[str] = []

    def fetch(url: str, headers: dict[str, str]) -> Fetched:
        seen.append(url)
        if url.endswith("/.well-known/oauth-authorization-server"):
            return Fetched(200, json.dumps(metadata).encode(), None, 300)
        return issuer.fetch(url, headers)

    verifier = Verifier(ISSUER, AUDIENCE, fetch=fetch, clock=lambda: NOW, monotonic=monotonic)
    assert verifier.verify(issuer.token())
    assert seen == [f"{ISSUER}/.well-known/oauth-authorization-server", f"{ISSUER}/jwks"]

    metadata["issuer"] = "https://evil"
    other = Verifier(ISSUER, AUDIENCE, fetch=fetch, clock=lambda: NOW, monotonic=monotonic)
    with pytest.raises(verify.KeySetUnavailable):
        other.verify(issuer.token())


def test_unusable_keys_in_the_set_are_skipped() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    body = json.dumps(
        {
            "keys": [
                _jwk("small", small),
                {**_jwk("liar", _RSA), "alg": "EdDSA"},
                {**_jwk("hmac", _RSA), "alg": "HS256"},
                {**_jwk("enc", _RSA), "use": "enc"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "oct", "alg": "HS256"},
                _jwk("good", _ED),
            ]
        }
    ).encode()
    assert list(parse_jwks(body)) == ["good"]


def test_concurrent_threads_share_one_fetch(issuer: FakeIssuer, verifier: Verifier) -> None:
    issuer.delay = 0.2
    tokens = [issuer.token(jti=str(i)) for i in range(20)]
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda t=t: results.append(verifier.verify(t))) for t in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20
    assert len(issuer.requests) == 1


async def test_concurrent_tasks_share_one_fetch(issuer: FakeIssuer, verifier: Verifier) -> None:
    issuer.delay = 0.2
    tokens = [issuer.token(jti=str(i)) for i in range(20)]
    results = await asyncio.gather(*(verifier.verify_async(t) for t in tokens))
    assert [r["jti"] for r in results] == [str(i) for i in range(20)]
    assert len(issuer.requests) == 1


async def test_the_async_api_raises_the_same_errors(issuer: FakeIssuer, verifier: Verifier) -> None:
    with pytest.raises(verify.UnknownKey):
        await verifier.verify_async(issuer.token(header={"kid": "nope"}))
    with pytest.raises(verify.Expired):
        await verifier.verify_async(issuer.token(exp=NOW - 100))
