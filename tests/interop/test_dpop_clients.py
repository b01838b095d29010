"""Interop, DPoP (RFC 9449): two npm clients written by nobody here, under Node, against a live
server over real HTTP, each with its own DPoP key and proofs: openid-client 6
(randomDPoPKeyPair, getDPoPHandle) and oauth4webapi (its DPoP handle and strict checks:
validateAuthResponse, processAuthorizationCodeResponse, processRefreshTokenResponse,
processUserInfoResponse). Code flow with PKCE, userinfo, a refresh, userinfo again; the test
then checks the binding from outside: `cnf.jkt` is the library's key, the access token is
refused as a Bearer token, and a public client's refresh token without a proof is refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests._dpop import DPoPKey, claims_of
from tests.http.test_verify_live import Live
from tests.interop.browser import INSECURE_COOKIES, browser_sign_in
from tests.interop.test_openid_client import RP, register_rp

HERE = Path(__file__).parent
LIBRARIES = ["openid-client", "oauth4webapi"]


@pytest.fixture(params=["off", "on"], ids=["nonces-off", "nonces-on"])
def dpop_nonce(request: pytest.FixtureRequest) -> str:
    """AUTHSERVER_DPOP_NONCE: with "on" both libraries meet `use_dpop_nonce` (RFC 9449 §8)."""
    value: str = request.param
    return value


@pytest.fixture
def live_overrides(dpop_nonce: str) -> dict[str, str]:
    return INSECURE_COOKIES | {"dpop_nonce": dpop_nonce}


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


async def _run(node: str, library: str, step: str, **fields: Any) -> dict[str, Any]:
    argv = [node, str(HERE / "dpop_clients.mjs"), library, step, json.dumps(fields)]
    with anyio.fail_after(60):
        result: subprocess.CompletedProcess[bytes] = await anyio.run_process(
            argv, cwd=HERE, check=False
        )
    assert result.returncode == 0, _text(result.stderr)
    answer: dict[str, Any] = json.loads(_text(result.stdout))
    return answer


@pytest.mark.parametrize("auth", ["none", "client_secret_basic"])
@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_library_signs_in_refreshes_and_reads_userinfo_with_dpop(
    node: str, live: Live, http: httpx.AsyncClient, library: str, auth: str, dpop_nonce: str
) -> None:
    client = await register_rp(live, auth)
    secret = client.get("client_secret")
    started = await _run(node, library, "start", **client)
    callback = await browser_sign_in(started["url"])

    done = await _run(node, library, "finish", **client, **started, callback=callback)

    assert done["extractable"] is False  # the library's own default
    assert done["token_type"].lower() == done["refreshed_token_type"].lower() == "dpop"
    for token in (done["access_token"], done["refreshed_access_token"]):
        assert claims_of(token)["cnf"] == {"jkt": done["jkt"]}
    expected = {"sub": done["sub"], "preferred_username": "alice"}
    expected |= {"email": "alice@example.org", "email_verified": True}
    assert done["userinfo"] == done["refreshed_userinfo"] == expected
    # With nonces on: asked once, at the first proof (the code exchange); every later proof
    # carried the fresh nonce of the answer before it, which userinfo shares with /token.
    assert done["nonce_refusals"] == (1 if dpop_nonce == "on" else 0)

    # From outside, without the library's key: the access token as a Bearer token, or with a
    # proof of another key, is refused.
    token = done["refreshed_access_token"]
    answer = await http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("DPoP ")
    thief = DPoPKey()
    proof = thief.proof("/userinfo", "GET", access_token=token, htu=f"{live.url}/userinfo")
    answer = await http.get("/userinfo", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    if dpop_nonce == "on":  # the server's nonce is no secret: the thief asks for it too
        assert answer.json()["error"] == "use_dpop_nonce"
        nonce = answer.headers["dpop-nonce"]
        proof = thief.proof(
            "/userinfo", "GET", access_token=token, htu=f"{live.url}/userinfo", nonce=nonce
        )
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        answer = await http.get("/userinfo", headers=headers)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_dpop_proof"
    # The refresh token: a public client's is bound to the key (no proof: invalid_grant, and
    # nothing spent); a confidential client's is bound to its secret instead, and rotates.
    fields = {"grant_type": "refresh_token", "refresh_token": done["refresh_token"]}
    fields |= {"client_id": RP} | ({"client_secret": secret} if secret else {})
    refreshed = await http.post("/token", data=fields)
    if secret is None:
        assert refreshed.status_code == 400, refreshed.text
        assert refreshed.json()["error"] == "invalid_grant"
    else:
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["token_type"] == "Bearer"
