"""The key epoch the workers of one `serve` share (authserver/keys/epoch.py): a key changed in
one worker is what every worker signs with from the next token on, on every issuing path.

Two apps in this process sharing one epoch file stand in for two workers here (the real
`serve --workers 2` is tests/test_key_revocation_workers.py); neither reloads on its timer
during the test (30 s with the defaults).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.config import Settings
from authserver.keys.epoch import (
    ENVIRONMENT,
    LocalEpoch,
    SharedEpoch,
    epoch_from_environment,
    shared_epoch,
)
from authserver.services import Services
from tests.conftest import ISSUER, Clock, Registry, password_login


def kid(token: str) -> str:
    found: str = jwt.get_unverified_header(token)["kid"]
    return found


@pytest.fixture
def epoch_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The epoch file as `serve --workers 2` makes it, its path in the environment."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkstemp makes it
    with shared_epoch(workers=2):
        yield os.environ[ENVIRONMENT]


@pytest.fixture
async def workers(
    settings: Settings, clock: Clock, fresh_keys: None, epoch_file: str
) -> AsyncIterator[list[tuple[httpx.AsyncClient, Services]]]:
    """Two apps, each with the shared epoch as a worker opens it; new keys, as a test here
    revokes one (fresh_keys, conftest)."""
    apps = [create_app(settings, clock=clock, key_epoch=epoch_from_environment()) for _ in "ab"]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        clients = [client_for(app) for app in apps]
        try:
            yield [(http, app.state.services) for http, app in zip(clients, apps, strict=True)]
        finally:
            for http in clients:
                await http.aclose()


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


async def test_a_key_revoked_in_one_worker_signs_nothing_more_on_any_path_of_the_other(
    workers: list[tuple[httpx.AsyncClient, Services]],
) -> None:
    (a, a_services), (b, b_services) = workers
    registry = Registry(a_services)
    await registry.user("alice", "correct horse", scopes=("profile",))
    await registry.client(
        "spa", public=True, grant_types=("password", "refresh_token"), scopes=("profile",)
    )
    secret = await registry.client("svc", scopes=("profile", "admin"))
    assert secret is not None
    login = await password_login(b)
    assert login.status_code == 200, login.text
    old_kid = kid(login.json()["access_token"])
    refresh_token = login.json()["refresh_token"]
    admin = await a.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=("svc", secret)
    )
    bearer = {"Authorization": f"Bearer {admin.json()['access_token']}"}

    response = await a.post(f"/admin/keys/{old_kid}/revoke", headers=bearer)

    assert response.status_code == 200, response.text
    assert b_services.keys.ring.signing.kid == old_kid  # B has not reloaded on its own
    password = await password_login(b)
    refreshed = await b.post(
        "/token",
        data={"grant_type": "refresh_token", "client_id": "spa", "refresh_token": refresh_token},
    )
    refreshed_again = await b.post(
        "/refresh", data={"client_id": "spa", "refresh_token": refreshed.json()["refresh_token"]}
    )
    service = await b.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("svc", secret)
    )
    for name, answer in [
        ("password", password),
        ("refresh_token", refreshed),
        ("/refresh", refreshed_again),
        ("client_credentials", service),
    ]:
        assert answer.status_code == 200, f"{name}: {answer.text}"
        assert kid(answer.json()["access_token"]) == a_services.keys.ring.signing.kid, name
    assert b_services.keys.ring.signing.kid != old_kid


async def test_an_unchanged_epoch_costs_no_reload(
    workers: list[tuple[httpx.AsyncClient, Services]],
) -> None:
    (_, services), _ = workers
    ring = services.keys.ring

    assert await services.keys.current() is ring
    assert await services.keys.current() is ring


def test_workers_share_the_epoch_file_serve_makes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkstemp makes it
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    with shared_epoch(workers=2):
        path = Path(os.environ[ENVIRONMENT])
        assert path.parent == tmp_path and path.stat().st_mode & 0o777 == 0o600
        first, second = SharedEpoch(str(path)), epoch_from_environment()
        assert first.read() == second.read() == 0
        first.bump()
        second.bump()
        assert first.read() == second.read() == 2
    assert ENVIRONMENT not in os.environ
    assert not path.exists()  # gone with the server


def test_one_worker_keeps_its_epoch_to_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkstemp makes it
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    with shared_epoch(workers=1):
        assert ENVIRONMENT not in os.environ
        assert isinstance(epoch_from_environment(), LocalEpoch)
    assert not list(tmp_path.iterdir())
