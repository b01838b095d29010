"""The Starlette glue with DPoP (RFC 9449 §7): a bound token passes only with the DPoP scheme
and a fresh proof of its key carrying `ath`; as Bearer it is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from authserver_verify import Verifier
from authserver_verify.dpop import Nonces, access_token_hash, jwk_thumbprint
from authserver_verify.starlette import BearerAuthMiddleware
from test_dpop import EC_KEY, make_proof, public_jwk
from test_starlette import whoami
from test_verifier import FakeIssuer, Monotonic, make_verifier

PUBLIC = "https://orders.example"
JKT = jwk_thumbprint(public_jwk(EC_KEY))
ALGS = 'algs="ES256 EdDSA"'


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
async def http(issuer: FakeIssuer) -> AsyncIterator[httpx.AsyncClient]:
    verifier: Verifier = make_verifier(issuer, Monotonic())
    middleware = Middleware(BearerAuthMiddleware, verifier=verifier, public_url=PUBLIC)
    app = Starlette(routes=[Route("/me", whoami)], middleware=[middleware])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://10.0.0.7:8080"
    ) as client:
        yield client


def dpop(token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def good_proof(token: str, key: object = EC_KEY) -> str:
    return make_proof(key, htm="GET", htu=PUBLIC + "/me", ath=access_token_hash(token))


async def test_a_bound_token_with_a_proof_of_its_key_passes_once(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(cnf={"jkt": JKT})
    headers = dpop(token, good_proof(token))
    response = await http.get("/me", headers=headers)
    assert response.status_code == 200, response.text
    replayed = await http.get("/me", headers=headers)
    assert replayed.status_code == 401
    assert replayed.headers["www-authenticate"] == f'DPoP error="invalid_dpop_proof", {ALGS}'


async def test_a_bound_token_as_bearer_is_refused(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(cnf={"jkt": JKT})
    response = await http.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'DPoP error="invalid_token", {ALGS}'


async def test_proofs_that_do_not_fit_are_refused(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(cnf={"jkt": JKT})
    other = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "another key": good_proof(token, other),
        "no ath": make_proof(htm="GET", htu=PUBLIC + "/me"),
        "the address it listens on": make_proof(
            htm="GET", htu="http://10.0.0.7:8080/me", ath=access_token_hash(token)
        ),
    }
    for name, proof in cases.items():
        response = await http.get("/me", headers=dpop(token, proof))
        assert response.status_code == 401, name
        assert response.json()["error"] == "invalid_dpop_proof", name
    missing = await http.get("/me", headers={"Authorization": f"DPoP {token}"})
    assert missing.json()["error"] == "invalid_dpop_proof"


async def test_an_unbound_token_with_the_dpop_scheme_is_refused(
    http: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token()
    response = await http.get("/me", headers=dpop(token, good_proof(token)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'DPoP error="invalid_token", {ALGS}'
    bad = await http.get("/me", headers=dpop(token + "x", good_proof(token)))
    assert bad.headers["www-authenticate"] == f'DPoP error="invalid_token", {ALGS}'


async def test_a_service_may_demand_nonces(issuer: FakeIssuer) -> None:
    """§9 with `dpop_nonces`: a proof without one is told to use one (401 use_dpop_nonce and a
    DPoP-Nonce), a proof with it passes, and the answer brings the next."""
    nonces = Nonces([b"the service's shared secret 32 b"])
    verifier: Verifier = make_verifier(issuer, Monotonic())
    middleware = Middleware(
        BearerAuthMiddleware, verifier=verifier, public_url=PUBLIC, dpop_nonces=nonces
    )
    app = Starlette(routes=[Route("/me", whoami)], middleware=[middleware])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
        token = issuer.token(cnf={"jkt": JKT})
        refused = await http.get("/me", headers=dpop(token, good_proof(token)))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == f'DPoP error="use_dpop_nonce", {ALGS}'
        nonce = refused.headers["dpop-nonce"]
        assert refused.headers.get_list("dpop-nonce") == [nonce]  # one, not two
        proof = make_proof(htm="GET", htu=PUBLIC + "/me", ath=access_token_hash(token), nonce=nonce)
        response = await http.get("/me", headers=dpop(token, proof))
        assert response.status_code == 200, response.text
        assert nonces.accepts(response.headers["dpop-nonce"])
        forged = make_proof(htm="GET", htu=PUBLIC + "/me", ath=access_token_hash(token),
                            nonce=Nonces([b"x" * 32]).issue())  # fmt: skip
        assert (await http.get("/me", headers=dpop(token, forged))).status_code == 401
