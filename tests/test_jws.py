"""Where a JWT is signed: authserver/tokens/jws.py, for access tokens and ID tokens alike.

Both kinds leave the one builder with the same protected header (alg, kid, typ in that order,
JSON without spaces), differ only by `typ`, and verify with PyJWT against the same JWKS. And no
other module signs a token on its own.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from authserver.keys.ring import KeyRing, make_key
from authserver.keys.sealing import KeySealer
from authserver.tokens.access_tokens import mint_access_token
from authserver.tokens.id_tokens import mint_id_token

PACKAGE = Path(__file__).resolve().parent.parent / "authserver"
ISSUER = "https://login.example.com"


def _ring(alg: str) -> KeyRing:
    sealer = KeySealer(bytes(range(32)))
    now = int(time.time())
    active = make_key(alg, "active", sealer, now).record
    other = make_key("EdDSA" if alg == "RS256" else "RS256", "next", sealer, now).record
    return KeyRing([active, replace(other)], sealer, now=now, retired_ttl=900)


def _raw_header(token: str) -> bytes:
    part = token.split(".")[0]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_access_and_id_tokens_share_one_header_shape_and_one_jwks(alg: str) -> None:
    ring = _ring(alg)
    now = int(time.time())
    access = mint_access_token(
        ring,
        issuer=ISSUER,
        audience="orders-api",
        ttl=900,
        now=now,
        sub="user-1",
        client_id="spa",
        scope="openid",
        sid="sid-1",
    ).token
    id_token = mint_id_token(
        ring, issuer=ISSUER, client_id="spa", sub="user-1", now=now, auth_time=now,
        nonce="n-ü", access_token=access,
    )  # fmt: skip

    key = ring.signing
    for token, typ in ((access, "at+jwt"), (id_token, "JWT")):
        expected = {"alg": key.alg, "kid": key.kid, "typ": typ}
        assert _raw_header(token) == json.dumps(expected, separators=(",", ":")).encode()

    jwks = jwt.PyJWKSet.from_json(ring.jwks_body.decode())
    verifier = jwks[key.kid].key
    claims = jwt.decode(access, verifier, algorithms=[alg], audience="orders-api", issuer=ISSUER)
    assert claims["sub"] == "user-1"
    claims = jwt.decode(id_token, verifier, algorithms=[alg], audience="spa", issuer=ISSUER)
    assert claims["nonce"] == "n-ü"


def test_no_module_but_jws_signs_a_jwt() -> None:
    """A second builder would be a second place to keep header order and separators right:
    only jws.py calls a SigningKey's sign() or writes a JOSE header's `typ`."""
    home = PACKAGE / "tokens" / "jws.py"
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path == home:
            continue
        text = path.read_text()
        if re.search(r"(?<!private_key)\.sign\(|[\"']typ[\"']\s*:", text):
            elsewhere.append(path.relative_to(PACKAGE).as_posix())
    assert elsewhere == []
