"""The password check has one home, actions/sign_in.check_password: the password grant and the
sign-in page meet the same throttle (one count for both) and write the same failure audit."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.audit import username_digest
from authserver.throttle import USERNAME
from tests.conftest import Registry, password_login
from tests.http.signin import INSECURE_COOKIES, WEB, Flow, authorize, sign_in, web_client

PACKAGE = Path(__file__).resolve().parents[2] / "authserver"
HOME = "actions/sign_in.py"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def test_the_grant_and_the_sign_in_page_share_one_throttle_and_one_audit(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    login_url = (await authorize(client, Flow.new(WEB).params)).headers["location"]

    # The free failures, half through each entrance, then one more: the block starts.
    for n in range(USERNAME.free + 1):
        if n % 2:
            assert (await sign_in(client, login_url, password="wrong")).status_code == 400
        else:
            response = await password_login(client, "alice", "wrong")
            assert response.json()["error"] == "invalid_grant"

    # Blocked at both, the right password included.
    grant = await password_login(client, "alice", "correct horse")
    page = await sign_in(client, login_url, password="correct horse")
    assert (grant.status_code, grant.json()["error"]) == (429, "slow_down")
    assert page.status_code == 429
    assert grant.headers["retry-after"] == page.headers["retry-after"]

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT actor, target, detail FROM audit_events"
                    " WHERE action = 'login.failed' ORDER BY id"
                )
            )
        ).all()
    assert len(rows) == USERNAME.free + 1
    assert {(row.actor, row.target) for row in rows} == {("anonymous", username_digest("alice"))}
    details = [json.loads(row.detail) for row in rows]
    assert details[0] == {"client_id": "spa"}
    assert details[1] == {"client_id": WEB, "via": "sign_in_page"}


def test_only_check_password_checks_a_password() -> None:
    """users.authenticate (argon2, the dummy hash, rehash, disabled) and throttle.guard are
    called from one function; a second caller would be a second login with its own rules.
    The other callers of the throttle are the second factor's checks (sign_in_steps.py, and
    passkeys.py's passkey after the password), which must spend the same per-account budget
    as the password."""
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in {"authenticate", "users.authenticate", "throttle.guard", "guard"}:
                    callers.add((path.relative_to(PACKAGE).as_posix(), name))
    steps, passkeys = "actions/sign_in_steps.py", "actions/passkeys.py"
    assert callers == {
        (HOME, "authenticate"),
        (HOME, "throttle.guard"),
        (steps, "throttle.guard"),
        (passkeys, "throttle.guard"),
    }
