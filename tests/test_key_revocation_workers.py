"""`authserver serve --workers 2`, for real: a key revoked through the admin API signs nothing
more on either worker once the revocation has answered, though only one of them handled it and
the other's periodic reload is 30 s away (the default JWKS_MAX_AGE).

Tokens are issued (client_credentials) on a new connection each, so both workers take some;
the per-worker metrics files (tests/test_metrics_workers.py) show that both still issued after
the revocation answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services
from tests.conftest import Registry, make_settings
from tests.test_metrics_workers import (
    REQUESTS,
    Server,
    by_worker,
    environment,
    fresh_connections,
    serving,
)

ISSUERS = 4  # issuing loops at once: a bounded load for a shared 2-core machine
AFTER = 3.0  # seconds of issuing after the revocation answered
TOKENS = {"method": "POST", "route": "/token", "status": "200"}

# The test revokes the active key: start from none and leave none (see conftest).
pytestmark = pytest.mark.usefixtures("fresh_keys")


@dataclass(frozen=True)
class Issued:
    sent: float  # time.monotonic() when the request went out
    kid: str


def tokens_by_worker(server: Server) -> dict[int, float]:
    return by_worker(server.metrics_dir, REQUESTS, TOKENS)


async def issue(http: httpx.AsyncClient, server: Server, auth: tuple[str, str]) -> Issued:
    sent = time.monotonic()
    response = await http.post(
        f"{server.url}/token", data={"grant_type": "client_credentials"}, auth=auth
    )
    assert response.status_code == 200, response.text
    return Issued(sent, jwt.get_unverified_header(response.json()["access_token"])["kid"])


async def test_a_key_revoked_on_one_worker_signs_nothing_more_on_the_other(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the workers of one serve on Postgres, as deployed")
    env = environment(database_url, tmp_path)
    registry = Registry(build_services(make_settings(database_url, tmp_path / "keys"), engine))
    secret = await registry.client("svc", scopes=("admin",))
    assert secret is not None
    auth = ("svc", secret)

    async with serving(env, tmp_path) as server, fresh_connections() as http:
        (epoch_file,) = (tmp_path / "tmp").glob("authserver-key-epoch-*")  # serve made it
        assert epoch_file.stat().st_mode & 0o777 == 0o600
        # Both workers issue (and so have their key ring) before anything changes.
        with anyio.fail_after(30):
            while len([n for n in tokens_by_worker(server).values() if n]) < 2:
                first = await issue(http, server, auth)
        admin = await http.post(
            f"{server.url}/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            auth=auth,
        )
        bearer = {"Authorization": f"Bearer {admin.json()['access_token']}"}

        issued: list[Issued] = []
        revoked_at = float("inf")
        done = anyio.Event()

        async def issuing() -> None:
            while not done.is_set():
                issued.append(await issue(http, server, auth))

        async def revoke() -> None:
            nonlocal revoked_at
            await anyio.sleep(0.5)
            response = await http.post(
                f"{server.url}/admin/keys/{first.kid}/revoke", headers=bearer
            )
            assert response.status_code == 200, response.text
            revoked_at = time.monotonic()
            before = tokens_by_worker(server)
            await anyio.sleep(AFTER)
            done.set()
            after = tokens_by_worker(server)
            # Both workers issued after the revocation answered: each was put to the test.
            assert all(after[pid] > before.get(pid, 0) for pid in after), (before, after)

        with anyio.fail_after(AFTER + 20):
            async with anyio.create_task_group() as tasks:
                for _ in range(ISSUERS):
                    tasks.start_soon(issuing)
                tasks.start_soon(revoke)

    later = [token for token in issued if token.sent > revoked_at]
    survivors = [token for token in later if token.kid == first.kid]
    assert len(later) >= 20, f"too few tokens issued after the revocation: {len(later)}"
    assert not survivors, (
        f"{len(survivors)} of {len(later)} tokens asked for after the revocation answered "
        f"were signed with the revoked key, the last "
        f"{max(t.sent for t in survivors) - revoked_at:.1f} s after it"
    )
    assert server.process.returncode == 0, server.log.read_text()[-3000:]
    assert not epoch_file.exists()  # gone with the server
