"""Signing keys: RFC 7638 names, public-only JWKs, sealing at rest, the KEK file, the key ring."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from authserver.config import Settings
from authserver.keys.records import KeyRecord
from authserver.keys.ring import (
    KeyRing,
    NewKey,
    load_private_key,
    load_public_key,
    make_key,
    public_jwk,
    thumbprint,
)
from authserver.keys.sealing import KeySealer, key_encryption_key

NOW = 1_700_000_000
TTL = 930
KEK = bytes(range(32))

# RFC 7638 §3.1, the example RSA key (its "alg" and "kid" must not enter the thumbprint).
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lF"
    "d2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture(scope="module")
def sealer() -> KeySealer:
    return KeySealer(KEK)


@pytest.fixture(scope="module")
def rsa_key(sealer: KeySealer) -> NewKey:
    return make_key("RS256", "active", sealer, NOW)


@pytest.fixture(scope="module")
def ed_key(sealer: KeySealer) -> NewKey:
    return make_key("EdDSA", "next", sealer, NOW)


def test_rsa_thumbprint_is_the_rfc_7638_example() -> None:
    assert thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ed25519_thumbprint_is_the_rfc_8037_example() -> None:
    # RFC 8037 Appendix A.3.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_public_jwk_round_trips_the_rfc_example() -> None:
    members = {name: RFC7638_JWK[name] for name in ("kty", "n", "e")}
    assert public_jwk(load_public_key(members)) == members


@pytest.mark.parametrize(
    ("key_name", "alg", "members"),
    [
        ("rsa_key", "RS256", {"kty", "kid", "use", "alg", "n", "e"}),
        ("ed_key", "EdDSA", {"kty", "kid", "use", "alg", "crv", "x"}),
    ],
)
def test_make_key_publishes_a_public_only_jwk(
    request: pytest.FixtureRequest, key_name: str, alg: str, members: set[str]
) -> None:
    key: NewKey = request.getfixturevalue(key_name)
    jwk = key.record.public_jwk
    assert set(jwk) == members
    assert jwk["use"] == "sig"
    assert jwk["alg"] == alg == key.record.alg
    assert jwk["kid"] == key.record.kid == thumbprint(jwk)
    # The published key is the public half of the private key that was made.
    assert public_jwk(load_public_key(jwk)) == public_jwk(key.private_key.public_key())


def test_make_key_makes_keys_of_the_requested_kind(rsa_key: NewKey, ed_key: NewKey) -> None:
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    assert rsa_key.private_key.key_size >= 2048
    assert rsa_key.record.public_jwk["kty"] == "RSA"
    assert isinstance(ed_key.private_key, ed25519.Ed25519PrivateKey)
    assert ed_key.record.public_jwk["crv"] == "Ed25519"
    assert rsa_key.record.activated_at == NOW
    assert ed_key.record.activated_at is None


def test_make_key_refuses_other_algorithms(sealer: KeySealer) -> None:
    with pytest.raises(ValueError):
        make_key("HS256", "next", sealer, NOW)


def test_the_sealed_private_key_opens_to_the_same_key(sealer: KeySealer, rsa_key: NewKey) -> None:
    record = rsa_key.record
    pem = sealer.open(record.kid, record.sealed_private_key)
    assert b"PRIVATE KEY" not in record.sealed_private_key
    private = load_private_key(pem)
    assert isinstance(private, rsa.RSAPrivateKey)
    signature = private.sign(b"message", padding.PKCS1v15(), hashes.SHA256())
    public = load_public_key(record.public_jwk)
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"message", padding.PKCS1v15(), hashes.SHA256())


def test_sealing_round_trips_and_uses_a_fresh_nonce(sealer: KeySealer) -> None:
    first = sealer.seal("kid-1", b"secret pem")
    second = sealer.seal("kid-1", b"secret pem")
    assert first != second
    assert sealer.open("kid-1", first) == sealer.open("kid-1", second) == b"secret pem"
    assert b"secret pem" not in first


def test_a_tampered_sealed_key_does_not_open(sealer: KeySealer) -> None:
    sealed = bytearray(sealer.seal("kid-1", b"secret pem"))
    for index in (0, 12, len(sealed) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(InvalidTag):
            sealer.open("kid-1", bytes(tampered))
    with pytest.raises(InvalidTag):
        sealer.open("kid-1", bytes(sealed[:-1]))


def test_a_sealed_key_does_not_open_under_another_kek(sealer: KeySealer) -> None:
    sealed = sealer.seal("kid-1", b"secret pem")
    with pytest.raises(InvalidTag):
        KeySealer(bytes(32)).open("kid-1", sealed)


def test_a_sealed_key_moved_to_another_kid_does_not_open(sealer: KeySealer) -> None:
    sealed = sealer.seal("kid-1", b"secret pem")
    with pytest.raises(InvalidTag):
        sealer.open("kid-2", sealed)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_kek_is_made_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    settings = Settings(keys_dir=tmp_path / "keys")
    kek = key_encryption_key(settings)
    path = tmp_path / "keys" / "kek"
    assert len(kek) == 32
    assert mode_of(path) == 0o600
    assert key_encryption_key(settings) == kek
    assert key_encryption_key(Settings(keys_dir=tmp_path / "keys")) == kek
    assert key_encryption_key(Settings(keys_dir=tmp_path / "other")) != kek
    KeySealer(kek)  # usable as an AES-256 key


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644], ids=oct)
def test_a_kek_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    settings = Settings(keys_dir=tmp_path)
    key_encryption_key(settings)
    os.chmod(tmp_path / "kek", mode)
    with pytest.raises(PermissionError):
        key_encryption_key(settings)


def test_the_kek_setting_wins_and_no_file_is_made(tmp_path: Path) -> None:
    settings = Settings(keys_dir=tmp_path / "keys", key_encryption_key=KEK)
    assert key_encryption_key(settings) == KEK
    assert not (tmp_path / "keys" / "kek").exists()


def ring(records: list[KeyRecord], sealer: KeySealer, now: int = NOW) -> KeyRing:
    return KeyRing(records, sealer, now=now, retired_ttl=TTL)


def published_kids(key_ring: KeyRing) -> set[str]:
    body = json.loads(key_ring.jwks_body)
    kids = {jwk["kid"] for jwk in body["keys"]}
    assert kids == set(key_ring.verification)
    return kids


@pytest.fixture(scope="module")
def old_key(sealer: KeySealer) -> NewKey:
    return make_key("EdDSA", "active", sealer, NOW - 10_000)


def test_the_ring_signs_with_the_active_key_and_publishes_next_too(
    sealer: KeySealer, rsa_key: NewKey, ed_key: NewKey
) -> None:
    key_ring = ring([ed_key.record, rsa_key.record], sealer)
    assert key_ring.signing.kid == rsa_key.record.kid
    assert key_ring.signing.alg == "RS256"
    assert published_kids(key_ring) == {rsa_key.record.kid, ed_key.record.kid}
    assert key_ring.signing_algs == ["EdDSA", "RS256"]
    for jwk in json.loads(key_ring.jwks_body)["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk)
        assert {"kty", "kid", "use", "alg"} <= set(jwk)


def test_a_ring_without_an_active_key_is_refused(sealer: KeySealer, ed_key: NewKey) -> None:
    with pytest.raises(LookupError):
        ring([ed_key.record], sealer)


def test_a_retired_key_is_published_until_its_tokens_have_expired(
    sealer: KeySealer, rsa_key: NewKey, old_key: NewKey
) -> None:
    retired = replace(old_key.record, state="retired", retired_at=NOW - 100)
    records = [retired, rsa_key.record]
    last_moment = NOW - 100 + TTL - 1
    assert retired.kid in published_kids(ring(records, sealer, now=NOW))
    assert retired.kid in published_kids(ring(records, sealer, now=last_moment))
    assert retired.kid not in published_kids(ring(records, sealer, now=last_moment + 1))
    assert ring(records, sealer, now=last_moment + 1).signing.kid == rsa_key.record.kid


@pytest.mark.parametrize("retired_at", [None, NOW - 1])
def test_a_revoked_key_is_never_published(
    sealer: KeySealer, rsa_key: NewKey, old_key: NewKey, retired_at: int | None
) -> None:
    revoked = replace(old_key.record, state="revoked", retired_at=retired_at, revoked_at=NOW)
    key_ring = ring([revoked, rsa_key.record], sealer)
    assert published_kids(key_ring) == {rsa_key.record.kid}


def test_the_jwks_etag_follows_the_published_set(
    sealer: KeySealer, rsa_key: NewKey, ed_key: NewKey, old_key: NewKey
) -> None:
    both = ring([rsa_key.record, ed_key.record], sealer)
    # Another process with the same keys must hand out the same ETag.
    assert both.jwks_etag == ring([ed_key.record, rsa_key.record], sealer, now=NOW + 5).jwks_etag
    assert both.jwks_etag.startswith('"') and both.jwks_etag.endswith('"')

    alone = ring([rsa_key.record], sealer)
    assert alone.jwks_etag != both.jwks_etag

    retired = replace(old_key.record, state="retired", retired_at=NOW)
    with_retired = ring([retired, rsa_key.record], sealer)
    assert with_retired.jwks_etag not in (alone.jwks_etag, both.jwks_etag)
    gone = ring([retired, rsa_key.record], sealer, now=NOW + TTL)
    assert gone.jwks_etag == alone.jwks_etag


def test_a_reload_reuses_the_parsed_private_key(sealer: KeySealer, rsa_key: NewKey) -> None:
    """Parsing an RSA private key validates it (~55 ms of the event loop): a reload every
    ≤ 30 s must not pay it again for a key it has parsed (bench/reload_stall.py)."""
    active = replace(rsa_key.record, state="active")
    first = KeyRing([active], sealer, now=NOW, retired_ttl=TTL)
    again = KeyRing([active], sealer, now=NOW, retired_ttl=TTL)
    assert again.signing.private_key is first.signing.private_key
    # Rewrapped under another KEK, the same kid still opens, and to the same parsed key.
    other = KeySealer(bytes(32), KEK)
    rewrapped = other.rewrap(active, KeySealer(bytes(32)))
    assert KeyRing([rewrapped], other, now=NOW, retired_ttl=TTL).signing.private_key is (
        first.signing.private_key
    )
    # Still opened on every reload: a wrong KEK is refused, however warm the cache.
    with pytest.raises(InvalidTag):
        KeyRing([active], KeySealer(bytes(32)), now=NOW, retired_ttl=TTL)
