"""DPoP proofs (RFC 9449 §4.3) with real keys, and the hostile catalogue of §11."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authserver_verify.dpop import (
    InvalidDPoPProof,
    Nonces,
    ReplayCache,
    UseDPoPNonce,
    access_token_hash,
    check_proof,
    jwk_thumbprint,
    normalize_htu,
)

URL = "https://auth.example/token"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        text = ECAlgorithm.to_jwk(key.public_key())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        text = OKPAlgorithm.to_jwk(key.public_key())
    else:
        text = RSAAlgorithm.to_jwk(key.public_key())
    jwk: dict[str, Any] = json.loads(text)
    return jwk


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_proof(
    key: Any = EC_KEY,
    alg: str = "ES256",
    *,
    htm: str = "POST",
    htu: str = URL,
    iat: Any = None,
    drop: str = "",
    jwk: dict[str, Any] | None = None,
    typ: str = "dpop+jwt",
    **claims: Any,
) -> str:
    when = int(time.time()) if iat is None else int(iat) if isinstance(iat, float) else iat
    body = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": when}
    body.update(claims)
    body.pop(drop, None)
    header = {"typ": typ, "jwk": public_jwk(key) if jwk is None else jwk}
    return jwt.encode(body, key, algorithm=alg, headers=header)


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def segment(value: dict[str, Any]) -> str:
        return b64(json.dumps(value).encode())

    return f"{segment(header)}.{segment(claims)}.{b64(signature)}"


def refused(proof: str | None, detail: str, **kwargs: Any) -> None:
    kwargs.setdefault("method", "POST")
    kwargs.setdefault("url", URL)
    with pytest.raises(InvalidDPoPProof) as caught:
        check_proof(proof, **kwargs)
    assert caught.value.detail == detail
    assert caught.value.error == "invalid_dpop_proof"


# Named by algorithm: a key's str() holds its address, which differs between pytest-xdist's
# workers, and they must collect the same tests.
@pytest.mark.parametrize(
    ("key", "alg"),
    [(EC_KEY, "ES256"), (ED_KEY, "EdDSA"), (RSA_KEY, "RS256")],
    ids=["ES256", "EdDSA", "RS256"],
)
def test_a_proof_of_each_algorithm_passes_with_the_keys_thumbprint(key: Any, alg: str) -> None:
    algs = {"ES256", "EdDSA", "RS256"}
    proof = check_proof(make_proof(key, alg), method="POST", url=URL, algs=algs)
    jwk = public_jwk(key)
    # RFC 7638 §3.1's example, recomputed for this key the long way.
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    members = ",".join(f'"{m}":"{jwk[m]}"' for m in required[jwk["kty"]])
    assert proof.jkt == b64(hashlib.sha256(("{" + members + "}").encode()).digest())
    assert proof.jkt == jwk_thumbprint(jwk)


def test_rfc_7638_example_thumbprint() -> None:
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
        "Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
        "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rs256_is_off_unless_asked_for() -> None:
    refused(make_proof(RSA_KEY, "RS256"), "alg not accepted")


def test_htu_is_compared_after_normalisation() -> None:
    # §4.3 names syntax- and scheme-based normalisation; query and fragment are ignored.
    assert normalize_htu("HTTPS://Auth.Example:443/a/./b/../token?x=1#f") == URL.replace(
        "token", "a/token"
    )
    assert normalize_htu("http://h:80") == "http://h/"
    assert normalize_htu("https://h:8443/%7euser/%2f") == "https://h:8443/~user/%2F"
    proof = make_proof(htu="HTTPS://AUTH.example:443/token?q=1#frag")
    check_proof(proof, method="post", url=URL)
    check_proof(proof, method="POST", url=URL + "?other=2")


HTU_CONFUSION = {
    "another host": "https://evil.example/token",
    "another port": "https://auth.example:8443/token",
    "another scheme": "http://auth.example/token",
    "another path": "https://auth.example/userinfo",
    "a path prefix": "https://auth.example/token/extra",
    "userinfo": "https://auth.example@evil.example/token",
    "a trailing dot path": "https://auth.example/token/.",
}


@pytest.mark.parametrize("htu", HTU_CONFUSION.values(), ids=HTU_CONFUSION.keys())
def test_htu_confusion_is_refused(htu: str) -> None:
    with pytest.raises(InvalidDPoPProof) as caught:
        check_proof(make_proof(htu=htu), method="POST", url=URL)
    assert caught.value.detail.startswith("htu")


def test_htu_that_is_no_http_url_is_refused() -> None:
    refused(make_proof(htu="urn:x:token"), "htu is not an http(s) URL")
    refused(make_proof(htu="https://auth.example:99999/token"), "htu is not an http(s) URL")


def test_htm_must_be_the_method() -> None:
    refused(make_proof(htm="GET"), "htm does not match")


def test_alg_none_is_refused() -> None:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(EC_KEY)}
    refused(unsigned(header, {"jti": "1", "htm": "POST", "htu": URL, "iat": int(time.time())})
            .rstrip("."), "not a JWT: not three base64url segments")  # fmt: skip
    refused(unsigned(header, {"jti": "1"}, b"x"), "alg not accepted")


def test_a_symmetric_alg_is_refused_even_keyed_with_the_public_key() -> None:
    # The classic confusion: HMAC keyed with the public JWK's bytes.
    jwk = public_jwk(EC_KEY)
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}
    claims = {"jti": "1", "htm": "POST", "htu": URL, "iat": int(time.time())}
    text = unsigned(header, claims)
    signing_input = text.rsplit(".", 1)[0].encode()
    mac = hmac.new(json.dumps(jwk).encode(), signing_input, hashlib.sha256).digest()
    refused(f"{signing_input.decode()}.{b64(mac)}", "alg not accepted")
    jwk_oct = {"kty": "oct", "k": b64(b"secret")}
    refused(make_proof(b"s" * 32, "HS256", jwk=jwk_oct), "alg not accepted")


def test_a_private_key_in_jwk_is_refused() -> None:
    private = json.loads(ECAlgorithm.to_jwk(EC_KEY))
    assert "d" in private
    refused(make_proof(jwk=private), "jwk holds a private key")


def test_a_huge_jwk_is_refused() -> None:
    jwk = {**public_jwk(EC_KEY), "pad": "x" * 1100}
    refused(make_proof(jwk=jwk), "jwk too large")
    jwk = {**public_jwk(EC_KEY), "pad": "x" * 5000}
    refused(make_proof(jwk=jwk), "proof too large")


def test_a_jwk_of_another_key_does_not_verify() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    refused(make_proof(EC_KEY, jwk=public_jwk(other)), "signature does not verify")


def test_a_jwk_that_does_not_fit_the_alg_is_refused() -> None:
    refused(make_proof(EC_KEY, jwk=public_jwk(ED_KEY)), "jwk does not fit alg")
    p384 = ec.generate_private_key(ec.SECP384R1())
    refused(make_proof(p384, "ES384"), "alg not accepted")
    refused(make_proof(jwk={**public_jwk(EC_KEY), "crv": "P-384"}), "EC key not on P-256")


def test_typ_must_be_dpop_jwt() -> None:
    refused(make_proof(typ="JWT"), "typ is not dpop+jwt")
    refused(make_proof(typ="at+jwt"), "typ is not dpop+jwt")


def test_iat_far_in_the_future_or_past_is_refused() -> None:
    now = time.time()
    refused(make_proof(iat=now + 3600), "iat in the future", now=now)
    refused(make_proof(iat=now - 61), "iat too old", now=now)
    check_proof(make_proof(iat=now - 59), method="POST", url=URL, now=now)
    check_proof(make_proof(iat=now + 4), method="POST", url=URL, now=now)


def test_required_claims() -> None:
    for missing in ("jti", "htm", "htu", "iat"):
        proof = make_proof(drop=missing)
        with pytest.raises(InvalidDPoPProof):
            check_proof(proof, method="POST", url=URL)
    refused(make_proof(jti="x" * 129), "jti missing or too long")
    refused(make_proof(jti=""), "jti missing or too long")
    refused(make_proof(iat=True), "iat missing")


def test_garbage_is_refused_not_raised() -> None:
    for value in (None, "", "a.b", "a.b.c", "!!.!!.!!", "x" * 5000):
        with pytest.raises(InvalidDPoPProof):
            check_proof(value, method="POST", url=URL)
    header = {
        "typ": "dpop+jwt",
        "alg": "ES256",
        "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "BB"},
    }
    refused(unsigned(header, {}, b"s"), "EC coordinates not 32 bytes")
    header["jwk"] = {"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)}
    refused(unsigned(header, {}, b"s"), "jwk is not a valid public key")


def test_ath_binds_the_proof_to_the_access_token() -> None:
    token = "eyJ.some.token"
    ath = b64(hashlib.sha256(token.encode()).digest())
    assert access_token_hash(token) == ath
    check_proof(make_proof(ath=ath), method="POST", url=URL, access_token=token)
    refused(make_proof(), "ath does not match the access token", access_token=token)
    refused(make_proof(ath=ath), "ath does not match the access token", access_token=token + "x")


def test_a_nonce_when_the_server_demands_one() -> None:
    with pytest.raises(UseDPoPNonce) as caught:
        check_proof(make_proof(), method="POST", url=URL, nonce=lambda n: n == "n1")
    assert caught.value.error == "use_dpop_nonce"
    with pytest.raises(UseDPoPNonce):
        check_proof(make_proof(nonce="n0"), method="POST", url=URL, nonce=lambda n: n == "n1")
    check_proof(make_proof(nonce="n1"), method="POST", url=URL, nonce=lambda n: n == "n1")


def test_a_replayed_proof_is_seen_once() -> None:
    cache = ReplayCache()
    text = make_proof()
    proof = check_proof(text, method="POST", url=URL)
    assert cache.first_use(proof.replay_key, proof.expires_at)
    again = check_proof(text, method="POST", url=URL)
    assert not cache.first_use(again.replay_key, again.expires_at)
    # The same jti under another key is another proof.
    other = check_proof(make_proof(ED_KEY, "EdDSA", jti=proof.jti), method="POST", url=URL)
    assert other.replay_key != proof.replay_key


def test_the_replay_cache_forgets_expired_entries_and_refuses_when_full() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.first_use("a", 100, now=0) and cache.first_use("b", 100, now=0)
    assert not cache.first_use("c", 100, now=50)  # full of live entries: refuse, never forget
    assert cache.first_use("c", 200, now=101) and len(cache) == 1
    assert not cache.first_use("c", 200, now=150)


def test_nonces_hold_for_the_window_and_the_next_and_only_with_the_key() -> None:
    nonces = Nonces([b"k" * 32])
    start = 1_800_000_000  # a window's first second
    nonce = nonces.issue(start)
    assert nonces.accepts(nonce, start) and nonces.accepts(nonce, start + 119)
    assert not nonces.accepts(nonce, start + 120)  # rotated out
    assert not nonces.accepts(nonce, start - 6)  # from the future, beyond the skew allowed
    assert nonces.accepts(nonce, start - 5)
    assert not Nonces([b"o" * 32]).accepts(nonce, start)
    # A secret being replaced: the new one makes nonces, the old one's still hold.
    replaced = Nonces([b"n" * 32, b"k" * 32])
    assert replaced.accepts(nonce, start) and nonces.accepts(replaced.issue(start), start) is False
    for garbage in ("", "x", "=" * 32, nonce + "A", nonce[:-1] + "\u00e9", "A" * 32):
        assert not nonces.accepts(garbage, start)
    with pytest.raises(ValueError):
        Nonces([])


def test_with_nonces_a_proof_out_of_the_window_is_told_to_use_one() -> None:
    with pytest.raises(UseDPoPNonce):
        check_proof(make_proof(iat=int(time.time()) - 3600, nonce="n1"), method="POST", url=URL,
                    nonce=lambda n: n == "n1")  # fmt: skip
