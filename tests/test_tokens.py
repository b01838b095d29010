"""Access tokens: the RFC 9068 shape we mint, and every hostile token verification must refuse.

Hostile tokens are built by hand and, wherever a signature could be valid, carry a real one made
with a key the server trusts: a refusal then proves the check, not a broken signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from authserver.keys.ring import KeyRing, NewKey, make_key
from authserver.keys.sealing import KeySealer
from authserver.tokens.access_tokens import TokenRejected, mint_access_token, verify_access_token

ISSUER = "https://login.example.com"
AUDIENCE = "orders-api"
TTL = 900
LEEWAY = 30
CLAIMS = {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid"}


@dataclass(frozen=True)
class Keys:
    rsa: NewKey
    ed: NewKey
    rsa_ring: KeyRing  # RSA active, Ed25519 next: both published
    ed_ring: KeyRing  # Ed25519 active, RSA next


@pytest.fixture(scope="module")
def keys() -> Keys:
    sealer = KeySealer(bytes(range(32)))
    now = int(time.time())
    rsa_key = make_key("RS256", "active", sealer, now)
    ed_key = make_key("EdDSA", "next", sealer, now)
    rsa_next = replace(rsa_key.record, state="next", activated_at=None)
    ed_active = replace(ed_key.record, state="active", activated_at=now)
    return Keys(
        rsa=rsa_key,
        ed=ed_key,
        rsa_ring=KeyRing([rsa_key.record, ed_key.record], sealer, now=now, retired_ttl=TTL),
        ed_ring=KeyRing([rsa_next, ed_active], sealer, now=now, retired_ttl=TTL),
    )


def verify(token: str, ring: KeyRing) -> dict[str, Any]:
    return verify_access_token(token, ring, issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY)


def mint(ring: KeyRing, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "ttl": TTL,
        "now": int(time.time()),
        "sub": "user-1",
        "client_id": "spa",
        "scope": "profile",
        "sid": "family-1",
    }
    return mint_access_token(ring, **{**arguments, **overrides}).token


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def as_json(value: dict[str, Any] | str) -> str:
    return value if isinstance(value, str) else json.dumps(value)


Signer = Callable[[bytes], bytes]


def rs256(key: NewKey) -> Signer:
    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    return lambda data: private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def eddsa(key: NewKey) -> Signer:
    private = key.private_key
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    return private.sign


def forge(header: dict[str, Any] | str, payload: dict[str, Any] | str, sign: Signer) -> str:
    signing_input = b64(as_json(header).encode()) + "." + b64(as_json(payload).encode())
    return signing_input + "." + b64(sign(signing_input.encode()))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now + TTL,
        "iat": now,
        "jti": b64(b"j" * 16),
        "client_id": "spa",
        "scope": "profile",
        "sid": "family-1",
    }
    return {name: value for name, value in {**base, **overrides}.items() if value is not None}


def rsa_header(keys: Keys, **overrides: Any) -> dict[str, Any]:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": keys.rsa.record.kid, **overrides}
    return {name: value for name, value in header.items() if value is not None}


# -- what we mint --------------------------------------------------------------------------------


@pytest.mark.parametrize("ring_name", ["rsa_ring", "ed_ring"])
def test_minted_token_has_the_rfc_9068_header(keys: Keys, ring_name: str) -> None:
    ring: KeyRing = getattr(keys, ring_name)
    header = jwt.get_unverified_header(mint(ring))
    assert header == {"alg": ring.signing.alg, "kid": ring.signing.kid, "typ": "at+jwt"}


def test_minted_token_carries_exactly_the_claims_of_api_md(keys: Keys) -> None:
    minted = mint_access_token(
        keys.rsa_ring,
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl=600,
        now=1_700_000_000,
        sub="user-1",
        client_id="spa",
        scope="profile admin",
        sid="family-1",
    )
    payload = json.loads(unb64(minted.token.split(".")[1]))
    assert payload == minted.claims
    assert set(payload) == CLAIMS  # in particular, no nbf
    assert payload["iss"] == ISSUER
    assert payload["sub"] == "user-1"
    assert payload["aud"] == AUDIENCE
    assert payload["iat"] == 1_700_000_000
    assert payload["exp"] == 1_700_000_600
    assert payload["client_id"] == "spa"
    assert payload["scope"] == "profile admin"
    assert payload["sid"] == "family-1"


def test_a_token_without_a_session_has_no_sid(keys: Keys) -> None:
    payload = verify(mint(keys.rsa_ring, sid=None), keys.rsa_ring)
    assert set(payload) == CLAIMS - {"sid"}


def test_jti_has_at_least_128_random_bits(keys: Keys) -> None:
    jtis = [verify(mint(keys.ed_ring), keys.ed_ring)["jti"] for _ in range(50)]
    assert len(set(jtis)) == len(jtis)
    assert all(len(unb64(jti)) >= 16 for jti in jtis)


@pytest.mark.parametrize("ring_name", ["rsa_ring", "ed_ring"])
def test_verify_accepts_a_token_we_minted(keys: Keys, ring_name: str) -> None:
    ring: KeyRing = getattr(keys, ring_name)
    minted = mint_access_token(
        ring,
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl=TTL,
        now=int(time.time()),
        sub="user-1",
        client_id="spa",
        scope="profile",
        sid="family-1",
    )
    assert verify(minted.token, ring) == minted.claims


def test_a_token_signed_by_the_next_key_verifies_on_a_ring_where_it_is_not_yet_active(
    keys: Keys,
) -> None:
    # After a rotation, instances that have not reloaded yet must accept the new key's tokens.
    assert verify(mint(keys.ed_ring), keys.rsa_ring)["sub"] == "user-1"


def test_a_token_expired_within_the_leeway_is_still_accepted(keys: Keys) -> None:
    token = mint(keys.rsa_ring, now=int(time.time()) - TTL - LEEWAY // 3)
    assert verify(token, keys.rsa_ring)["sub"] == "user-1"


def test_hand_built_tokens_verify_when_nothing_is_wrong(keys: Keys) -> None:
    # The control for the hostile cases below: the forging helpers make valid tokens.
    assert verify(forge(rsa_header(keys), claims(), rs256(keys.rsa)), keys.rsa_ring)
    ed_header = {"alg": "EdDSA", "typ": "at+jwt", "kid": keys.ed.record.kid}
    assert verify(forge(ed_header, claims(), eddsa(keys.ed)), keys.rsa_ring)
    media_type = rsa_header(keys, typ="application/at+jwt")
    assert verify(forge(media_type, claims(), rs256(keys.rsa)), keys.rsa_ring)
    padded = claims(pad="x" * 5000)
    assert verify(forge(rsa_header(keys), padded, rs256(keys.rsa)), keys.rsa_ring)


# -- what we refuse ------------------------------------------------------------------------------


def alg_none(keys: Keys) -> str:
    header = b64(json.dumps(rsa_header(keys, alg="none")).encode())
    return header + "." + b64(json.dumps(claims()).encode()) + "."


def alg_none_with_signature(keys: Keys) -> str:
    return forge(rsa_header(keys, alg="none"), claims(), rs256(keys.rsa))


def hmac_with_public_key(pem_format: serialization.PublicFormat) -> Callable[[Keys], str]:
    def build(keys: Keys) -> str:
        secret = keys.rsa.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, pem_format
        )
        return forge(
            rsa_header(keys, alg="HS256"),
            claims(),
            lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
        )

    return build


def hmac_with_jwk(keys: Keys) -> str:
    secret = json.dumps(keys.rsa.record.public_jwk).encode()
    return forge(
        rsa_header(keys, alg="HS256"),
        claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )


def with_header(**extra: Any) -> Callable[[Keys], str]:
    return lambda keys: forge(rsa_header(keys, **extra), claims(), rs256(keys.rsa))


def embedded_attacker_jwk(keys: Keys) -> str:
    attacker = make_key("EdDSA", "active", KeySealer(bytes(32)), 0)
    header = {
        "alg": "EdDSA",
        "typ": "at+jwt",
        "kid": attacker.record.kid,
        "jwk": attacker.record.public_jwk,
    }
    return forge(header, claims(), eddsa(attacker))


def unknown_kid(keys: Keys) -> str:
    stranger = make_key("EdDSA", "active", KeySealer(bytes(32)), 0)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": stranger.record.kid}
    return forge(header, claims(), eddsa(stranger))


def our_kid_signed_by_another_key(keys: Keys) -> str:
    stranger = make_key("EdDSA", "active", KeySealer(bytes(32)), 0)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": keys.ed.record.kid}
    return forge(header, claims(), eddsa(stranger))


def eddsa_header_on_the_rsa_kid(keys: Keys) -> str:
    # A real EdDSA signature by a key we trust, but the kid names the RSA key.
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": keys.rsa.record.kid}
    return forge(header, claims(), eddsa(keys.ed))


def rs256_header_on_the_eddsa_kid(keys: Keys) -> str:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": keys.ed.record.kid}
    return forge(header, claims(), rs256(keys.rsa))


def ps256_with_our_rsa_key(keys: Keys) -> str:
    private = keys.rsa.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return forge(
        rsa_header(keys, alg="PS256"),
        claims(),
        lambda data: private.sign(data, pss, hashes.SHA256()),
    )


def payload_changed_after_signing(keys: Keys) -> str:
    header, _, signature = forge(rsa_header(keys), claims(), rs256(keys.rsa)).split(".")
    return ".".join((header, b64(json.dumps(claims(sub="admin")).encode()), signature))


def with_claims(**overrides: Any) -> Callable[[Keys], str]:
    return lambda keys: forge(rsa_header(keys), claims(**overrides), rs256(keys.rsa))


def minted(**overrides: Any) -> Callable[[Keys], str]:
    return lambda keys: mint(keys.rsa_ring, **overrides)


def expired_beyond_the_leeway(keys: Keys) -> str:
    return mint(keys.rsa_ring, now=int(time.time()) - TTL - LEEWAY - 5)


def issued_in_the_future(keys: Keys) -> str:
    # Built when the test runs: the wall clock moves between collection and the run.
    return forge(rsa_header(keys), claims(iat=int(time.time()) + LEEWAY + 60), rs256(keys.rsa))


def duplicate_header_member(keys: Keys) -> str:
    kid = keys.rsa.record.kid
    header = f'{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","kid":"{kid}"}}'
    return forge(header, claims(), rs256(keys.rsa))


def duplicate_typ(keys: Keys) -> str:
    kid = keys.rsa.record.kid
    header = f'{{"alg":"RS256","typ":"JWT","kid":"{kid}","typ":"at+jwt"}}'
    return forge(header, claims(), rs256(keys.rsa))


def duplicate_payload_member(keys: Keys) -> str:
    payload = json.dumps(claims())[:-1] + ', "sub": "admin"}'
    return forge(rsa_header(keys), payload, rs256(keys.rsa))


def too_large(keys: Keys) -> str:
    token = forge(rsa_header(keys), claims(pad="x" * 8000), rs256(keys.rsa))
    assert len(token) > 8192
    return token


def with_padding(keys: Keys) -> str:
    header, payload, signature = forge(rsa_header(keys), claims(), rs256(keys.rsa)).split(".")
    return f"{header}==.{payload}.{signature}"


def non_object(header: Any, payload: Any) -> Callable[[Keys], str]:
    return lambda keys: forge(
        json.dumps(rsa_header(keys) if header is None else header),
        json.dumps(claims() if payload is None else payload),
        rs256(keys.rsa),
    )


def literal(token: str) -> Callable[[Keys], str]:
    return lambda keys: token


def two_segments(keys: Keys) -> str:
    return ".".join(mint(keys.rsa_ring).split(".")[:2])


def four_segments(keys: Keys) -> str:
    return mint(keys.rsa_ring) + ".AAAA"


def utf16_header(keys: Keys) -> str:
    # RFC 7515 §5.2: the header is UTF-8; json.loads on bytes would take UTF-16 as well.
    header = b64(json.dumps(rsa_header(keys)).encode("utf-16"))
    signing_input = header + "." + b64(json.dumps(claims()).encode())
    return signing_input + "." + b64(rs256(keys.rsa)(signing_input.encode()))


def trailing_newline(keys: Keys) -> str:
    # A regular expression's `$` matches before a final newline; the alphabet check must not.
    return mint(keys.rsa_ring) + "\n"


HOSTILE: dict[str, Callable[[Keys], str]] = {
    "alg none": alg_none,
    "alg none with a signature": alg_none_with_signature,
    "alg NONE": with_header(alg="NONE"),
    "HS256 keyed with the public key PEM": hmac_with_public_key(
        serialization.PublicFormat.SubjectPublicKeyInfo
    ),
    "HS256 keyed with the PKCS1 public key PEM": hmac_with_public_key(
        serialization.PublicFormat.PKCS1
    ),
    "HS256 keyed with the public JWK": hmac_with_jwk,
    "jku header": with_header(jku="https://attacker.example/jwks.json"),
    "jwk header naming our key": with_header(jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
    "jwk header with the attacker's key": embedded_attacker_jwk,
    "x5u header": with_header(x5u="https://attacker.example/cert.pem"),
    "x5c header": with_header(x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
    "crit header": with_header(crit=["exp"]),
    "crit header with an extension": with_header(crit=["x-policy"], **{"x-policy": 1}),
    "typ missing": with_header(typ=None),
    "typ JWT": with_header(typ="JWT"),
    "typ at+jwt in a list": with_header(typ=["at+jwt"]),
    "kid missing": with_header(kid=None),
    "kid not a string": with_header(kid=1),
    "unknown kid": unknown_kid,
    "our kid, signed by another key": our_kid_signed_by_another_key,
    "EdDSA header on the RSA kid": eddsa_header_on_the_rsa_kid,
    "RS256 header on the EdDSA kid": rs256_header_on_the_eddsa_kid,
    "PS256 with our RSA key": ps256_with_our_rsa_key,
    "payload changed after signing": payload_changed_after_signing,
    "wrong iss": minted(issuer="https://attacker.example"),
    "iss with a trailing slash": minted(issuer=ISSUER + "/"),
    "wrong aud": minted(audience="billing-api"),
    "aud list without ours": with_claims(aud=["billing-api", "other-api"]),
    "expired beyond the leeway": expired_beyond_the_leeway,
    "issued in the future beyond the leeway": issued_in_the_future,
    "exp as a string": with_claims(exp="4102444800"),
    "exp as a boolean": with_claims(exp=True),
    "no exp": with_claims(exp=None),
    "no iat": with_claims(iat=None),
    "no iss": with_claims(iss=None),
    "no aud": with_claims(aud=None),
    "no jti": with_claims(jti=None),
    "no sub": with_claims(sub=None),
    "no client_id": with_claims(client_id=None),
    "jti not a string": with_claims(jti=12345),
    "duplicate kid in the header": duplicate_header_member,
    "duplicate typ in the header": duplicate_typ,
    "duplicate sub in the payload": duplicate_payload_member,
    "more than 8 KiB": too_large,
    "base64 padding": with_padding,
    "header is a JSON array": non_object(["RS256"], None),
    "payload is a JSON array": non_object(None, ["user-1"]),
    "payload is a JSON string": non_object(None, "user-1"),
    "empty": literal(""),
    "garbage": literal("garbage"),
    "spaces": literal("a b.c d.e f"),
    "two segments": two_segments,
    "four segments": four_segments,
    "empty segments": literal(".."),
    "not base64": literal("eyJhbGciOiJSUzI1NiJ9!.eyJzdWIiOiJ4In0.c2ln"),
    "standard base64 alphabet": literal("ab+c/.ab+c/.ab+c/"),
    "base64 but not JSON": literal(b64(b"\xff\xfe not json") + ".e30.c2ln"),
    "a single character segment": literal("a.b.c"),
    # Python's JSON parser gives up with RecursionError, which must be a refusal too.
    "a header nested 3,000 deep": literal(b64(b"[" * 3000) + ".e30.c2ln"),
    "a payload nested 3,000 deep": literal("e30." + b64(b"[" * 3000) + ".c2ln"),
    "a UTF-16 header signed by our key": utf16_header,
    "a trailing newline": trailing_newline,
}


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_verify_refuses_hostile_tokens(keys: Keys, build: Callable[[Keys], str]) -> None:
    token = build(keys)
    with pytest.raises(TokenRejected):
        verify(token, keys.rsa_ring)


def test_max_token_size_is_enforced_at_8_kib(keys: Keys) -> None:
    base = forge(rsa_header(keys), claims(pad=""), rs256(keys.rsa))
    # Base64 grows 4 characters per 3 bytes of padding claim.
    fits = forge(rsa_header(keys), claims(pad="x" * ((8192 - len(base)) * 3 // 4)), rs256(keys.rsa))
    assert 8192 - 4 <= len(fits) <= 8192
    assert verify(fits, keys.rsa_ring)["sub"] == "user-1"
    over = forge(rsa_header(keys), claims(pad="x" * (len(fits) - len(base) + 6)), rs256(keys.rsa))
    assert len(over) > 8192
    with pytest.raises(TokenRejected):
        verify(over, keys.rsa_ring)
