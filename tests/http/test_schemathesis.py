"""Schemathesis against a real `authserver serve`, on SQLite and on Postgres.

Every operation of /openapi.json gets generated requests (bounded: EXAMPLES each, no shrinking
past a failure's first example) with working credentials where it needs some; each answer must
not be a 5xx, must have a documented status, content type, headers and body, and must come
within RESPONSE_TIME. Then a stateful walk: log in, refresh, reuse the spent token, revoke,
each answer checked against the document the same way.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authserver.http.openapi import OPERATIONS, document, template
from tests._postgres import scratch_database
from tests.conftest import KEK

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))
EXAMPLES = int(
    os.environ.get("AUTHSERVER_TEST_EXAMPLES", "12")
)  # per operation and database: ~600 requests in all, well under a minute
STATEFUL_EXAMPLES = int(os.environ.get("AUTHSERVER_TEST_STATEFUL_EXAMPLES", "60"))
RESPONSE_TIME = 3.0  # seconds, on two shared cores; a request takes milliseconds
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PASSWORD = "correct horse battery staple"


@dataclass
class Live:
    base: str
    admin: str  # a bearer token with scope admin (client_credentials: no user session)
    service: str  # Basic credentials of a confidential client
    user_token: str  # a user's bearer token, for /logout/all
    log: Path

    def headers(self, method: str, path: str) -> dict[str, str]:
        security = OPERATIONS[(method, path)].get("security", [])
        names = {name for requirement in security for name in requirement}
        if path == "/logout/all":
            return {"Authorization": f"Bearer {self.user_token}"}
        if "bearer" in names and path.startswith("/admin/"):
            return {"Authorization": f"Bearer {self.admin}"}
        if "clientBasic" in names:
            return {"Authorization": f"Basic {self.service}"}
        return {}


def _run(env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [AUTHSERVER, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str | None,
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('st') / 'authserver.db'}"
        return
    if postgres_url is None:
        pytest.skip("no Postgres could be found or started (set AUTHSERVER_TEST_DATABASE_URL)")
    with scratch_database(postgres_url, "schemathesis") as url:
        yield url


@pytest.fixture(scope="module")
def live(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """`authserver serve` on a migrated database with two users, a SPA and an admin service."""
    cwd = tmp_path_factory.mktemp("serve")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        {
            "AUTHSERVER_DATABASE_URL": database,
            "AUTHSERVER_KEYS_DIR": str(cwd / "keys"),
            "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
            "AUTHSERVER_ISSUER": base,
            "AUTHSERVER_ARGON2_TIME_COST": "1",
            "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
            "AUTHSERVER_ARGON2_PARALLELISM": "1",
            # Idle keep-alive connections of the generated requests need not delay the end.
            "AUTHSERVER_SHUTDOWN_TIMEOUT": "1",
        }
    )
    _run(env, cwd, "migrate")
    # The admin service from the CLI; the rest through the admin API it unlocks (each CLI
    # command costs a process start).
    admin = ["clients", "create", "ops", "--grant", "client_credentials", "--scope", "admin"]
    secret = _run(env, cwd, *admin)
    log = cwd / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [AUTHSERVER, "serve", "--port", str(port)], env=env, cwd=cwd, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        service = base64.b64encode(f"ops:{secret}".encode()).decode()
        answer = httpx.post(
            f"{base}/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            headers={"Authorization": f"Basic {service}"},
        )
        assert answer.status_code == 200, answer.text
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        for body in (
            {"username": "alice", "password": PASSWORD, "admin": True},
            {"username": "bob", "password": PASSWORD},
            {
                "client_id": "spa",
                "public": True,
                "grant_types": ["password", "refresh_token"],
                "scopes": ["admin"],
            },
        ):
            path = "/admin/clients" if "client_id" in body else "/admin/users"
            created = httpx.post(f"{base}{path}", json=body, headers=bearer)
            assert created.status_code == 201, created.text
        user = httpx.post(f"{base}/token", data=login("bob"))
        assert user.status_code == 200, user.text
        yield Live(base, answer.json()["access_token"], service, user.json()["access_token"], log)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]


def login(username: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "username": username,
        "password": PASSWORD,
        "client_id": "spa",
    }


def schema(base: str) -> Any:
    return schemathesis.openapi.from_dict(document(base))


ORDERED = sorted(OPERATIONS, key=lambda k: (k[1], k[0]))


@pytest.mark.parametrize(("method", "path"), ORDERED, ids=[f"{m} {p}" for m, p in ORDERED])
def test_every_operation_answers_as_documented(live: Live, method: str, path: str) -> None:
    operation = schema(live.base)[template(path)][method]
    headers = live.headers(method, path)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a CI failure replays locally
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    # Valid requests and invalid ones (wrong types, missing members, bad media types) alike.
    @given(case=operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE))
    def answers(case: Any) -> None:
        response = case.call(base_url=live.base, headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS)
        assert response.elapsed < RESPONSE_TIME, f"{response.elapsed:.2f} s"

    answers()


def test_login_refresh_reuse_revoke_conform_step_by_step(live: Live) -> None:
    """The stateful walk: each step's request built from the previous step's answer."""
    api = schema(live.base)

    def step(path: str, body: dict[str, str], basic: bool = False) -> Any:
        case = api[path]["POST"].Case(body=body, media_type="application/x-www-form-urlencoded")
        headers = {"Authorization": f"Basic {live.service}"} if basic else {}
        response = case.call(base_url=live.base, headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS)
        return response

    first = step("/token", login("alice")).json()
    assert "refresh_token" in first, first
    spent = {"refresh_token": first["refresh_token"], "client_id": "spa"}
    second = step("/refresh", spent)
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    # Reuse of the spent token: invalid_grant, and the family is revoked, the newest token too.
    reused = step("/refresh", spent)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    newest = {"refresh_token": second.json()["refresh_token"], "client_id": "spa"}
    assert step("/refresh", newest).json()["error"] == "invalid_grant"
    access = {"token": second.json()["access_token"]}
    assert step("/introspect", access, basic=True).json() == {"active": False}
    # A fresh session, revoked by its client (RFC 7009), then refused.
    third = step("/token", login("alice")).json()
    assert step("/revoke", {"token": third["refresh_token"], "client_id": "spa"}).json() == {}
    again = {"refresh_token": third["refresh_token"], "client_id": "spa"}
    assert step("/refresh", again).json()["error"] == "invalid_grant"
    feed = httpx.get(f"{live.base}/revocations", headers={"Authorization": f"Basic {live.service}"})
    assert feed.status_code == 200 and feed.json()["sids"]


def test_the_links_hold_in_any_order(live: Live) -> None:
    """Schemathesis's state machine over the document's links (a login's answer → refresh,
    introspect, revoke), in sequences it chooses: every answer conforms, none is a 5xx."""
    # The linked operations only: with every operation in play, the walk spends its steps on
    # the other 40 and may never follow a link within its bounded examples.
    linked = schema(live.base).include(path=["/token", "/refresh", "/introspect", "/revoke"])
    base = linked.as_state_machine()
    issued: set[str] = set()  # refresh tokens of the logins
    followed: list[tuple[str, int]] = []  # requests that carried one: a link followed

    class Walk(base):  # type: ignore[misc, valid-type]
        def after_call(self, response: Any, case: Any) -> None:
            body = case.body if isinstance(case.body, dict) else {}
            if case.operation.path == "/token" and response.status_code == 200:
                issued.add(response.json()["refresh_token"])
            elif {body.get("refresh_token"), body.get("token")} & issued:
                followed.append((case.operation.path, response.status_code))

        def before_call(self, case: Any) -> None:
            if not isinstance(case.body, dict):
                return
            if case.operation.path == "/token":
                # A login that works, so its links lead somewhere.
                case.body = login("alice")
                case.media_type = "application/x-www-form-urlencoded"
            elif case.operation.path in ("/refresh", "/revoke"):
                # The login's client (the link's client_id is the generated request's, before
                # the login above replaced it); a generated secret would only make it 401.
                case.body["client_id"] = "spa"
                case.body.pop("client_secret", None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            path = case.operation.path
            basic = path == "/introspect" or (path == "/revoke" and "client_id" not in case.body)
            headers = {"Authorization": f"Basic {live.service}"} if basic else {}
            return {"base_url": live.base, "headers": headers, "timeout": 10}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)
            assert response.elapsed < RESPONSE_TIME, f"{response.elapsed:.2f} s"

    Walk.TestCase.settings = settings(
        max_examples=STATEFUL_EXAMPLES,
        stateful_step_count=4,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    Walk.TestCase().runTest()
    # The links were followed with the logins' tokens, not only with generated junk.
    assert {path for path, _ in followed} >= {"/refresh", "/revoke"}, followed
