"""A DPoP client's key and proofs (RFC 9449 §4), made with real keys."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from authserver_verify.dpop import access_token_hash, jwk_thumbprint
from tests.conftest import ISSUER


@dataclass
class DPoPKey:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        return jwk

    @property
    def jkt(self) -> str:
        return jwk_thumbprint(self.jwk)

    def proof(
        self,
        path: str = "/token",
        method: str = "POST",
        *,
        access_token: str | None = None,
        **claims: Any,
    ) -> str:
        body: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": ISSUER + path,
            "iat": int(time.time()),
        }
        if access_token is not None:
            body["ath"] = access_token_hash(access_token)
        body.update(claims)
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        return jwt.encode(body, self.key, algorithm="ES256", headers=headers)

    def header(self, path: str = "/token", **kwargs: Any) -> dict[str, str]:
        return {"DPoP": self.proof(path, **kwargs)}


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
