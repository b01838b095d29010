"""A DPoP proof's jti at a refresh and a code exchange (RFC 9449 §11.1), recorded by the grant's
own write (db/dpop.py's FIRST_USE_CTE): a replayed request is invalid_dpop_proof and changes
nothing, a proof refused for any other reason is spent all the same, and (Postgres) the jti
commits in the grant's own transaction."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests._dpop import DPoPKey
from tests.conftest import Registry, assert_oauth_error
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    Flow,
    admin_headers,
    code_for,
    web_client,
)
from tests.http.test_dpop_token import dpop_login, refresh


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return dict(INSECURE_COOKIES)


async def test_a_replayed_refresh_request_is_invalid_dpop_proof_and_spends_nothing(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    token = (await dpop_login(client, key))["refresh_token"]
    headers = key.header()
    rotated = await refresh(client, token, headers)
    assert rotated.status_code == 200, rotated.text
    # The whole request again (a spent token): the proof is refused, not taken for reuse.
    assert_oauth_error(await refresh(client, token, headers), 400, "invalid_dpop_proof")
    newest = rotated.json()["refresh_token"]
    # The proof with the live token: refused, and the token stays its holder's.
    assert_oauth_error(await refresh(client, newest, headers), 400, "invalid_dpop_proof")
    response = await refresh(client, newest, key.header())
    assert response.status_code == 200, response.text


async def test_a_refresh_refused_for_another_reason_spends_its_proof_all_the_same(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    token = (await dpop_login(client, key))["refresh_token"]
    unknown = await refresh(client, "no-such-token", (bad_token := key.header()))
    assert_oauth_error(unknown, 400, "invalid_grant")  # refused by the rotating statement
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
    wide = await client.post(
        "/token", data={**data, "scope": "nope"}, headers=(wide_h := key.header())
    )
    assert_oauth_error(wide, 400, "invalid_scope")  # refused before it
    no_client = await client.post(
        "/token", data={**data, "client_id": "nobody"}, headers=(anon := key.header())
    )
    assert_oauth_error(no_client, 401, "invalid_client")
    for headers in (bad_token, wide_h, anon):
        assert_oauth_error(await refresh(client, token, headers), 400, "invalid_dpop_proof")
    response = await refresh(client, token, key.header())  # nothing was spent
    assert response.status_code == 200, response.text


async def test_a_code_exchange_spends_its_proof_whatever_the_answer(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    flow = Flow.new()
    code = await code_for(client, flow)
    key = DPoPKey()
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": flow.verifier, "client_id": "web"}  # fmt: skip
    wrong = await client.post(
        "/token", data={**fields, "code_verifier": "x" * 43}, headers=(spent := key.header())
    )
    assert_oauth_error(wrong, 400, "invalid_grant")
    again = await client.post("/token", data=fields, headers=spent)
    assert_oauth_error(again, 400, "invalid_dpop_proof")
    headers = key.header()
    exchanged = await client.post("/token", data=fields, headers=headers)
    assert exchanged.status_code == 200, exchanged.text
    # The whole exchange again: the proof is refused, not taken for the code's replay, which
    # would revoke the family it started.
    replay = await client.post("/token", data=fields, headers=headers)
    assert_oauth_error(replay, 400, "invalid_dpop_proof")
    data = {"grant_type": "refresh_token", "refresh_token": exchanged.json()["refresh_token"],
            "client_id": "web"}  # fmt: skip
    response = await client.post("/token", data=data, headers=key.header())
    assert response.status_code == 200, response.text


async def _xmins(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT xmin::text FROM {table}"))
        return {row[0] for row in rows}


async def test_the_jti_commits_in_the_grants_own_transaction(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine, database_url: str
) -> None:
    """Nothing a client sees tells one transaction from two (the semantics are the same by
    design), so this reads the transaction that wrote the rows: Postgres's xmin."""
    if not database_url.startswith("postgresql"):
        pytest.skip("xmin is Postgres's; SQLite's is one BEGIN IMMEDIATE either way")
    await registry.user("alice", "correct horse")
    await web_client(registry)
    key = DPoPKey()
    flow = Flow.new()
    code = await code_for(client, flow)
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": flow.verifier, "client_id": "web"}  # fmt: skip
    proofs = await _xmins(engine, "dpop_proofs")
    exchanged = await client.post("/token", data=fields, headers=key.header())
    assert exchanged.status_code == 200, exchanged.text
    (exchange,) = await _xmins(engine, "refresh_families")
    assert exchange in await _xmins(engine, "dpop_proofs") - proofs

    tokens = await _xmins(engine, "refresh_families")
    proofs = await _xmins(engine, "dpop_proofs")
    data = {"grant_type": "refresh_token", "refresh_token": exchanged.json()["refresh_token"],
            "client_id": "web"}  # fmt: skip
    response = await client.post("/token", data=data, headers=key.header())
    assert response.status_code == 200, response.text
    (rotation,) = await _xmins(engine, "dpop_proofs") - proofs
    assert rotation in await _xmins(engine, "refresh_families") - tokens  # the live token's row


async def test_an_exchange_refused_for_a_user_disabled_since_spends_its_proof(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    """Postgres refuses it inside the exchange's statement; SQLite rolls its transaction back,
    and the jti is recorded apart."""
    alice = await registry.user("alice", "correct horse")
    await web_client(registry)
    secret = await registry.client("svc")
    assert secret is not None
    flow = Flow.new()
    code = await code_for(client, flow)
    root = await admin_headers(client, registry)
    assert (await client.post(f"/admin/users/{alice}/disable", headers=root)).status_code == 204
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": flow.verifier, "client_id": "web"}  # fmt: skip
    headers = DPoPKey().header()
    refused = await client.post("/token", data=fields, headers=headers)
    assert_oauth_error(refused, 400, "invalid_grant")
    # The same proof for another grant: used already.
    data = {"grant_type": "client_credentials"}
    again = await client.post("/token", data=data, auth=("svc", secret), headers=headers)
    assert_oauth_error(again, 400, "invalid_dpop_proof")
