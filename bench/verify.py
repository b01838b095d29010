"""Verification throughput of authserver_verify with a warm JWKS cache, against bare PyJWT.

    .venv/bin/python bench/verify.py [--tokens 2000] [--rounds 5]

Same keys, same tokens, same process, one thread. For RS256 (2048-bit) and EdDSA it measures:

- PyJWT: `jwt.decode(token, key, algorithms=[alg], audience=..., issuer=...)` with the key object
  already parsed (the floor any PyJWT-based verifier pays);
- cold: `Verifier.verify` on tokens it has never seen (a fresh verifier per round, its JWKS
  fetched once beforehand; the claims cache is on but misses), and again with `cache_size=0`;
- hot: `Verifier.verify` on one token seen before (the claims cache answers).

Every figure is the best of `--rounds` (the contenders take turns in each round), in
verifications per second on one core. Targets (issue 5):
cold >= 90 % of PyJWT, hot >= 5x PyJWT.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import cryptography
import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from authserver_verify import Fetched, Verifier

ISSUER = "https://auth.example"
AUDIENCE = "bench-api"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_key(alg: str) -> tuple[Any, dict[str, Any]]:
    private: Any
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=f"bench-{alg}", alg=alg, use="sig")
    return private, jwk


def make_tokens(alg: str, private: Any, kid: str, count: int) -> list[str]:
    now = int(time.time())
    header = {"typ": "at+jwt", "kid": kid}
    return [
        jwt.encode(
            {
                "iss": ISSUER,
                "sub": str(uuid.uuid4()),
                "aud": AUDIENCE,
                "exp": now + 900,
                "iat": now,
                "jti": str(uuid.uuid4()),
                "sid": str(uuid.uuid4()),
                "client_id": "spa",
                "scope": "profile orders:read",
            },
            private,
            algorithm=alg,
            headers=header,
        )
        for _ in range(count)
    ]


def verifier(jwk: dict[str, Any], cache_size: int = 10_000) -> Verifier:
    body = json.dumps({"keys": [jwk]}).encode()

    def fetch(url: str, headers: dict[str, str]) -> Fetched:
        return Fetched(200, body, '"bench"', 3600)

    return Verifier(
        ISSUER,
        AUDIENCE,
        jwks_url=f"{ISSUER}/.well-known/jwks.json",
        cache_size=cache_size,
        fetch=fetch,
    )


def bench(alg: str, count: int, rounds: int) -> dict[str, float]:
    private, jwk = make_key(alg)
    public = private.public_key()
    tokens = make_tokens(alg, private, jwk["kid"], count)
    warmup = make_tokens(alg, private, jwk["kid"], 1)[0]

    hot_verifier = verifier(jwk)
    hot_token = tokens[0]
    hot_verifier.verify(hot_token)
    # Sanity: both sides accept the tokens and agree on the claims.
    assert hot_verifier.verify(hot_token) == jwt.decode(
        hot_token, public, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER
    )

    def pyjwt() -> None:
        for token in tokens:
            jwt.decode(token, public, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    def cold(cache_size: int) -> Callable[[], None]:
        def run() -> None:
            verify = v.verify
            for token in tokens:
                verify(token)

        # A fresh verifier per round, its JWKS fetched before the clock starts.
        v = verifier(jwk, cache_size)
        v.verify(warmup)
        return run

    def hot() -> None:
        verify = hot_verifier.verify
        for _ in range(count):
            verify(hot_token)

    # The contenders take turns within each round, so a neighbour's load falls on all of them.
    best = dict.fromkeys(("pyjwt", "cold", "cold_nocache", "hot"), 0.0)
    contenders: list[tuple[str, Callable[[], Callable[[], None]]]] = [
        ("pyjwt", lambda: pyjwt),
        ("cold", lambda: cold(10_000)),
        ("cold_nocache", lambda: cold(0)),
        ("hot", lambda: hot),
    ]
    for _ in range(rounds):
        for name, prepare in contenders:
            run = prepare()
            started = time.perf_counter()
            run()
            best[name] = max(best[name], count / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}, PyJWT {jwt.__version__}, "
        f"cryptography {cryptography.__version__}"
    )
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{args.tokens} tokens, best of {args.rounds} rounds, one thread; verifications/s")
    print()
    header = f"{'alg':<6} {'PyJWT':>9} {'cold':>9} {'cold/PyJWT':>10} {'no cache':>9} "
    header += f"{'ratio':>6} {'hot':>10} {'hot/PyJWT':>9}"
    print(header)
    for alg in ("RS256", "EdDSA"):
        r = bench(alg, args.tokens, args.rounds)
        print(
            f"{alg:<6} {r['pyjwt']:>9,.0f} {r['cold']:>9,.0f} {r['cold'] / r['pyjwt']:>9.0%} "
            f"{r['cold_nocache']:>9,.0f} {r['cold_nocache'] / r['pyjwt']:>6.0%} "
            f"{r['hot']:>10,.0f} {r['hot'] / r['pyjwt']:>8.1f}x"
        )


if __name__ == "__main__":
    main()
