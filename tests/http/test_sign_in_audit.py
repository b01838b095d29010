"""The browser sign-in in the audit trail, the metrics and the revocation feed."""

from __future__ import annotations

import json

import httpx
import jwt
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Registry
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    authorize,
    code_for,
    exchange,
    sign_in,
    web_client,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


COUNTED = [
    ("authserver_authorize_requests_total", {"outcome": "code"}),
    ("authserver_authorize_requests_total", {"outcome": "sign_in"}),
    ("authserver_authorize_requests_total", {"outcome": "error"}),
    ("authserver_authorize_requests_total", {"outcome": "error_page"}),
    ("authserver_login_sessions_started_total", {}),
    ("authserver_logins_failed_total", {}),
    ("authserver_codes_issued_total", {}),
    ("authserver_tokens_issued_total", {"grant": "authorization_code"}),
    ("authserver_families_revoked_total", {"reason": "code_replay"}),
    ("authserver_families_revoked_total", {"reason": "end_session"}),
]


async def test_the_flow_is_audited_counted_and_fed_without_a_secret(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    sub = await registry.user("alice", "correct horse")
    await web_client(registry)
    before = [value(name, **labels) for name, labels in COUNTED]

    flow = Flow.new(WEB, scope="openid")
    login_url = (await authorize(client, flow.params)).headers["location"]
    assert (await sign_in(client, login_url, password="wrong horse")).status_code == 400
    code = await code_for(client, flow)  # signs in on the page
    tokens = (await exchange(client, code, flow)).json()
    assert (await exchange(client, code, flow)).status_code == 400  # replay
    second = Flow.new(WEB)
    second_tokens = (await exchange(client, await code_for(client, second), second)).json()
    bad = Flow.new(WEB, response_type="token")
    assert "error=" in (await authorize(client, bad.params)).headers["location"]
    assert (await authorize(client, Flow.new("nobody").params)).status_code == 400
    hint = {"id_token_hint": tokens["id_token"]}  # the app's proof: no question asked
    assert (await client.post("/end-session", data=hint)).status_code == 200

    after = [value(name, **labels) for name, labels in COUNTED]
    assert [round(b - a) for a, b in zip(before, after, strict=True)] == [
        1, 2, 1, 1, 1, 1, 2, 2, 1, 1,
    ]  # fmt: skip

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, target, user_id, family_id, detail"
                    " FROM audit_events ORDER BY id"
                )
            )
        ).all()
    actions = [row.action for row in rows]
    for action in (
        "authorize", "login.failed", "login.succeeded", "code.issued", "code.redeemed",
        "code.replayed", "family.revoked", "end_session",
    ):  # fmt: skip
        assert action in actions, actions
    details = {row.action: json.loads(row.detail) for row in rows}
    assert details["login.failed"]["via"] == "sign_in_page"
    assert details["authorize"] in (
        {"outcome": "sign_in"}, {"outcome": "error", "error": "unsupported_response_type"},
        {"outcome": "error_page", "error": "The client is not registered."},
    )  # fmt: skip
    assert details["end_session"]["families"] == 1  # the second flow's; the first was revoked
    revoked = [json.loads(r.detail)["reason"] for r in rows if r.action == "family.revoked"]
    assert sorted(revoked) == ["code_replay", "end_session"]
    every = " ".join(f"{row.target} {row.detail}" for row in rows)
    for secret in (code, "wrong horse", "correct horse", tokens["refresh_token"]):
        assert secret not in every
    assert any(row.user_id == sub for row in rows if row.action == "code.issued")

    # Both revoked sessions are in the revocation feed services poll.
    feed = (await client.get("/revocations", auth=("feed-reader", await _secret(registry)))).json()
    for body in (tokens, second_tokens):
        sid = jwt.decode(body["access_token"], options={"verify_signature": False})["sid"]
        assert sid in feed["sids"]


async def _secret(registry: Registry) -> str:
    secret = await registry.client("feed-reader")
    assert secret is not None
    return secret
