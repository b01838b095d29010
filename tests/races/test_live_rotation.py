"""Two real `authserver serve` processes on one Postgres, behind a pretend load balancer, with
a resource server verifying every token the way the README tells it to: JWKS cached for its
`max-age`, refetched on an unknown `kid`. Keys rotate on one instance while tokens are issued
by both; not one verification may fail, and the verifier may never even meet an unknown kid
(refetching would hide a server that signs with a key too early).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import build_services
from tests.conftest import ISSUER, KEK, Registry, make_settings, reset_keys
from tests.races._instances import ready, stop
from tests.test_cli import AUTHSERVER, free_port

JWKS_MAX_AGE = 4  # reload every second, promote a next key after 4 + 1 + 2 s
DURATION = 18.0  # seconds of issuing and verifying: room for two rotations


@dataclass
class Instances:
    urls: list[str]
    client_secret: str


@pytest.fixture
async def instances(
    database_url: str, tmp_path: Path, engine: AsyncEngine
) -> AsyncIterator[Instances]:
    if not database_url.startswith("postgresql"):
        pytest.skip("several instances share a Postgres; the embedded SQLite is one instance")
    await reset_keys(engine)
    settings = make_settings(database_url, tmp_path / "keys")
    secret = await Registry(build_services(settings, engine)).client(
        "svc", scopes=("profile", "admin")
    )
    assert secret is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        {
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_ISSUER": ISSUER,
            "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
            "AUTHSERVER_KEYS_DIR": str(tmp_path / "keys"),
            "AUTHSERVER_JWKS_MAX_AGE": str(JWKS_MAX_AGE),
            "AUTHSERVER_ACCESS_TOKEN_TTL": "60",
        }
    )
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"instance-{i}.log" for i in range(len(ports))]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port, log in zip(ports, logs, strict=True):
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [AUTHSERVER, "serve", "--port", str(port)],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            for url, process, log in zip(urls, processes, logs, strict=True):
                with anyio.fail_after(60):
                    while not await ready(http, url):
                        assert process.poll() is None, log.read_text()
                        await anyio.sleep(0.1)
        yield Instances(urls, secret)
    finally:
        stop(processes)
        await reset_keys(engine)


@dataclass
class CachingVerifier:
    """A resource server's verifier: the JWKS cached for its max-age, fetched through the load
    balancer (round robin), refetched once on an unknown kid."""

    http: httpx.AsyncClient
    jwks_urls: list[str]
    keys: dict[str, Any] = field(default_factory=dict)
    expires: float = 0.0
    fetches: int = 0
    unknown_kids: list[str] = field(default_factory=list)

    async def _fetch(self) -> None:
        response = await self.http.get(self.jwks_urls[self.fetches % len(self.jwks_urls)])
        self.fetches += 1
        max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
        assert max_age is not None
        self.expires = time.monotonic() + int(max_age.group(1))
        self.keys = {k["kid"]: jwt.PyJWK(k) for k in response.json()["keys"]}

    async def verify(self, token: str) -> dict[str, Any]:
        if time.monotonic() >= self.expires:
            await self._fetch()
        kid = jwt.get_unverified_header(token)["kid"]
        if kid not in self.keys:
            self.unknown_kids.append(kid)
            await self._fetch()
        key = self.keys[kid]  # KeyError: a token no published key can verify
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience="authserver-api",
            issuer=ISSUER,
        )
        return claims


async def test_rotating_on_one_instance_never_fails_a_verifier_caching_by_the_rules(
    instances: Instances,
) -> None:
    a, b = instances.urls
    auth = ("svc", instances.client_secret)
    failures: list[str] = []
    signed_by: dict[str, set[str]] = {a: set(), b: set()}
    rotations: list[float] = []
    refused = 0
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        verifier = CachingVerifier(http, [f"{url}/.well-known/jwks.json" for url in (a, b)])

        async def issue(url: str, scope: str) -> str:
            data = {"grant_type": "client_credentials", "scope": scope}
            response = await http.post(f"{url}/token", data=data, auth=auth)
            assert response.status_code == 200, response.text
            token: str = response.json()["access_token"]
            return token

        admin = {"Authorization": f"Bearer {await issue(a, 'admin')}"}
        started = time.monotonic()
        while time.monotonic() - started < DURATION:
            for url in (a, b):
                token = await issue(url, "profile")
                signed_by[url].add(jwt.get_unverified_header(token)["kid"])
                try:
                    await verifier.verify(token)
                except (jwt.PyJWTError, KeyError) as exc:
                    failures.append(f"{url}: {type(exc).__name__}: {exc}")
            # Try to rotate the moment the server allows it: the riskiest moment for caches.
            response = await http.post(f"{a}/admin/keys/rotate", headers=admin)
            if response.status_code == 200:
                rotations.append(time.monotonic() - started)
            else:
                assert response.status_code == 409, response.text
                assert int(response.headers["retry-after"]) > 0
                refused += 1
            await anyio.sleep(0.05)

    assert failures == []
    assert verifier.unknown_kids == []
    assert len(rotations) >= 2, rotations
    assert refused > 0
    # B picked up the rotations by itself (a last one may have come too late for it to sign).
    assert len(signed_by[b]) >= 3, signed_by
    assert signed_by[b] <= signed_by[a]
