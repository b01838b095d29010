"""`dpop_jkt` at /authorize (RFC 9449 §10): the code is bound to the key the request names, its
exchange needs a proof of that key (else invalid_grant, nothing spent), carried through the
sign-in and consent pages like the request's other parameters; a malformed one is refused."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.clients import Client
from authserver.services import Services
from tests._dpop import DPoPKey, claims_of
from tests.conftest import Registry, assert_oauth_error
from tests.http.signin import CALLBACK, INSECURE_COOKIES, Flow, code_for, query, web_client


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return dict(INSECURE_COOKIES)


def exchange_fields(code: str, flow: Flow) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
            "code_verifier": flow.verifier, "client_id": flow.params["client_id"]}  # fmt: skip


async def test_a_code_bound_at_authorize_needs_a_proof_of_that_key(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    key = DPoPKey()
    flow = Flow.new(dpop_jkt=key.jkt)
    code = await code_for(client, flow, password="correct horse")  # through /login
    async with engine.connect() as conn:
        stored = await conn.scalar(text("SELECT dpop_jkt FROM authorization_codes"))
    assert stored == key.jkt
    fields = exchange_fields(code, flow)
    # RFC 9449 §10: "If they do not match, it MUST reject the request": no proof, another key.
    for headers in ({}, DPoPKey().header()):
        response = await client.post("/token", data=fields, headers=headers)
        assert_oauth_error(response, 400, "invalid_grant")
    # Nothing was spent: the key's holder exchanges the code.
    response = await client.post("/token", data=fields, headers=key.header())
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_dpop_jkt_is_carried_through_the_consent_page(
    client: httpx.AsyncClient, registry: Registry, services: Services
) -> None:
    await registry.user("alice", "correct horse")
    third = Client("calendar", None, ("authorization_code",), ("openid",),
                   redirect_uris=(CALLBACK,), client_name="Calendar", consent=True)  # fmt: skip
    assert await services.clients.create(third, services.clock())
    key = DPoPKey()
    flow = Flow.new("calendar", scope="openid", dpop_jkt=key.jkt)
    code = await code_for(client, flow, password="correct horse", consent=True)
    fields = exchange_fields(code, flow)
    assert_oauth_error(await client.post("/token", data=fields), 400, "invalid_grant")
    response = await client.post("/token", data=fields, headers=key.header())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "jkt",
    ["", "short", "x" * 44, "a" * 42 + "=", "a" * 42 + "+", "a" * 42 + "\u00e9"],
)
async def test_a_malformed_dpop_jkt_is_invalid_request(
    client: httpx.AsyncClient, registry: Registry, jkt: str
) -> None:
    await web_client(registry)
    flow = Flow.new()
    params = {**flow.params, "dpop_jkt": jkt}
    response = await client.get("/authorize", params=params)
    assert response.status_code == 302, response.text
    answer = query(response.headers["location"])
    assert answer["error"] == "invalid_request" and answer["state"] == flow.params["state"]


async def test_two_dpop_jkt_parameters_are_invalid_request(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry)
    flow = Flow.new()
    key = DPoPKey()
    params = httpx.QueryParams([*flow.params.items(), ("dpop_jkt", key.jkt), ("dpop_jkt", key.jkt)])
    response = await client.get("/authorize", params=params)
    assert query(response.headers["location"])["error"] == "invalid_request"
