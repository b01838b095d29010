"""Interop: tokens from a live server verify with the npm `jose` package run by Node, for RS256
and EdDSA keys (createRemoteJWKSet + jwtVerify with its typ, iss, aud and alg checks).

The test installs the pinned package itself (conftest.py's `node` fixture). Without node or npm
it is skipped with the reason, except in CI (the CI variable set), where it fails instead.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.http.hostile import hostile_token
from tests.http.test_verify_live import Live, log_in

HERE = Path(__file__).parent


async def run_jose(node: str, live: Live, token: str) -> subprocess.CompletedProcess[str]:
    argv = [
        node,
        str(HERE / "verify.mjs"),
        f"{live.url}/.well-known/jwks.json",
        live.url,
        live.settings.audience,
        live.settings.signing_alg,
        token,
    ]
    with anyio.fail_after(60):
        return await anyio.run_process(argv, cwd=HERE, check=False)  # type: ignore[return-value]


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


async def test_tokens_verify_with_node_jose(node: str, live: Live, http: httpx.AsyncClient) -> None:
    token = (await log_in(http))["access_token"]

    result = await run_jose(node, live, token)

    assert result.returncode == 0, _text(result.stderr)
    verified: dict[str, Any] = json.loads(_text(result.stdout))
    assert verified["header"]["alg"] == live.settings.signing_alg
    assert verified["header"]["typ"] == "at+jwt"
    assert verified["claims"]["iss"] == live.url
    assert verified["claims"]["client_id"] == "spa"


@pytest.mark.parametrize(
    "name", ["signed_by_another_key", "wrong_issuer", "wrong_audience", "wrong_typ", "expired"]
)
async def test_node_jose_refuses_hostile_tokens(
    node: str, live: Live, http: httpx.AsyncClient, name: str
) -> None:
    """The control for the test above: the same script says no to a bad token."""
    token = (await log_in(http))["access_token"]

    result = await run_jose(node, live, hostile_token(name, live.services, token))

    assert result.returncode == 1
    assert _text(result.stderr).startswith("refused: ")
    assert token not in _text(result.stderr)
