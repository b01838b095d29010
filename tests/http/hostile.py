"""Access tokens an attacker might present, built from a genuine one (RFC 8725, RFC 9068 §4).

Each differs from a token the server accepts in one way only: its signature is made with the
server's real signing key unless the attack is about the key, so a refusal can only come from
the part that was changed. `forge(services, genuine)` with no changes must be accepted: tests
use it as the control that keeps the hostile cases from passing for the wrong reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from authserver.keys.ring import PrivateKey, public_jwk
from authserver.services import Services

HOSTILE = (
    "alg_none",
    "hs256_keyed_with_public_key",
    "jku_header",
    "jwk_header",
    "jwk_header_with_attacker_key",
    "x5u_header",
    "x5c_header",
    "signed_by_another_key",
    "unknown_kid",
    "expired",
    "wrong_issuer",
    "wrong_audience",
    "wrong_typ",
    "no_typ",
    "deeply_nested_header",
)


def forge(
    services: Services,
    genuine: str,
    *,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    drop_header: tuple[str, ...] = (),
    key: PrivateKey | None = None,
) -> str:
    """The genuine token's header and claims, changed as asked, signed with `key` (default:
    the server's real signing key)."""
    signing = services.keys.ring.signing
    new_header = {**jwt.get_unverified_header(genuine), **(header or {})}
    for name in drop_header:
        new_header.pop(name, None)
    new_claims = {**jwt.decode(genuine, options={"verify_signature": False}), **(claims or {})}
    return _sign(new_header, new_claims, key or signing.private_key)


def hostile_token(kind: str, services: Services, genuine: str) -> str:
    signing = services.keys.ring.signing
    public = signing.private_key.public_key()
    now = services.clock()
    ttl, leeway = services.settings.access_token_ttl, services.settings.clock_leeway
    if kind == "alg_none":
        header = {**jwt.get_unverified_header(genuine), "alg": "none"}
        return f"{_b64json(header)}.{genuine.split('.')[1]}."
    if kind == "hs256_keyed_with_public_key":
        # The classic confusion: the verifier's public key, used as an HMAC secret.
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {**jwt.get_unverified_header(genuine), "alg": "HS256"}
        signing_input = f"{_b64json(header)}.{genuine.split('.')[1]}"
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"
    if kind == "jku_header":
        return forge(services, genuine, header={"jku": "https://evil.example/jwks.json"})
    if kind == "jwk_header":
        return forge(services, genuine, header={"jwk": public_jwk(public)})
    if kind == "jwk_header_with_attacker_key":
        attacker = _attacker_key(signing.alg)
        return forge(
            services, genuine, header={"jwk": public_jwk(attacker.public_key())}, key=attacker
        )
    if kind == "x5u_header":
        return forge(services, genuine, header={"x5u": "https://evil.example/cert.pem"})
    if kind == "x5c_header":
        return forge(services, genuine, header={"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"]})
    if kind == "signed_by_another_key":
        return forge(services, genuine, key=_attacker_key(signing.alg))
    if kind == "unknown_kid":
        return forge(services, genuine, header={"kid": "not-a-kid-of-this-server"})
    if kind == "expired":
        iat = now - ttl - leeway - 60
        return forge(services, genuine, claims={"iat": iat, "exp": iat + ttl})
    if kind == "wrong_issuer":
        return forge(services, genuine, claims={"iss": "https://evil.example"})
    if kind == "wrong_audience":
        return forge(services, genuine, claims={"aud": "some-other-api"})
    if kind == "wrong_typ":
        return forge(services, genuine, header={"typ": "JWT"})
    if kind == "no_typ":
        return forge(services, genuine, drop_header=("typ",))
    if kind == "deeply_nested_header":
        # Deeper than Python's JSON parser goes (RecursionError), well under the size bound.
        _, payload, signature = genuine.split(".")
        return f"{_b64(b'[' * 3000)}.{payload}.{signature}"
    raise ValueError(f"unknown hostile token kind {kind!r}")


def _sign(header: dict[str, Any], claims: dict[str, Any], key: PrivateKey) -> str:
    # By hand rather than jwt.encode, which would rewrite `alg` and `typ` to its own liking.
    signing_input = f"{_b64json(header)}.{_b64json(claims)}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(signing_input)
    return f"{signing_input.decode()}.{_b64(signature)}"


def _attacker_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def _b64json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
