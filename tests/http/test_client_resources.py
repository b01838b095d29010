"""A client's resources (docs/resources.md, "Which clients may ask for a resource"): an allow-list
of registered resource URIs, as Hydra's per-client `audience`; empty, any registered resource.
Set by operators (admin API, checked by the one metadata validator), honoured at /authorize and
at every grant of /token with invalid_target, on both databases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Registry, assert_oauth_error, password_login
from tests.http.signin import CALLBACK, Flow, exchange, query
from tests.http.test_resources import FILES, MCP, OTHER, at, claims_of, code_naming, service_token
from tests.http.test_resources import admin as admin  # the fixtures
from tests.http.test_resources import registered as registered
from tests.http.test_resources import settings_overrides as settings_overrides
from tests.http.test_resources import web as web


async def patch_client(
    client: httpx.AsyncClient, admin: dict[str, str], client_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.patch(f"/admin/clients/{client_id}", json=body, headers=admin)


async def test_an_operator_sets_shows_replaces_and_clears_a_clients_resources(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None
) -> None:
    body = {"client_id": "svc2", "scopes": ["read"], "resources": [MCP, FILES, MCP]}
    created = await client.post("/admin/clients", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["resources"] == [MCP, FILES]  # once each, in order
    shown = (await client.get("/admin/clients/svc2", headers=admin)).json()
    assert shown["resources"] == [MCP, FILES]

    replaced = await patch_client(client, admin, "svc2", {"resources": [OTHER]})
    assert replaced.status_code == 200 and replaced.json()["resources"] == [OTHER]
    # Another change keeps the list as it is.
    renamed = await patch_client(client, admin, "svc2", {"client_name": "Service"})
    assert renamed.json()["resources"] == [OTHER]
    cleared = await patch_client(client, admin, "svc2", {"resources": []})
    assert cleared.status_code == 200 and cleared.json()["resources"] == []
    # Without the member, a client may ask for any registered resource, as before.
    plain = await client.post("/admin/clients", json={"client_id": "svc3"}, headers=admin)
    assert plain.json()["resources"] == []


@pytest.mark.parametrize(
    "resources",
    [
        ["https://unknown.example/"],
        [MCP, "https://unknown.example/"],
        ["/relative"],
        [MCP + "#fragment"],
        ["https://r.example/\x00"],
        [MCP + "/" + "x" * 3000],
        [f"https://r{n}.example/" for n in range(65)],
        MCP,
        [1],
    ],
    ids=["unknown", "one-unknown", "relative", "fragment", "nul", "huge", "many", "string", "int"],
)
async def test_a_resource_list_naming_no_registered_resource_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None, resources: Any
) -> None:
    body = {"client_id": "svc2", "resources": resources}
    assert_oauth_error(
        await client.post("/admin/clients", json=body, headers=admin), 400, "invalid_request"
    )
    assert_oauth_error(await client.get("/admin/clients/svc2", headers=admin), 404, "not_found")
    plain = await client.post("/admin/clients", json={"client_id": "svc2"}, headers=admin)
    assert plain.status_code == 201
    refused = await patch_client(client, admin, "svc2", {"resources": resources})
    assert_oauth_error(refused, 400, "invalid_request")


async def test_client_credentials_get_tokens_for_the_clients_resources_only(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None, registry: Registry
) -> None:
    secret = await registry.client("svc", scopes=("read", "write"))
    assert secret is not None
    service = ("svc", secret)
    assert (await patch_client(client, admin, "svc", {"resources": [MCP]})).status_code == 200
    allowed = await service_token(client, service, resource=MCP)
    assert allowed.status_code == 200 and claims_of(allowed.json()["access_token"])["aud"] == MCP
    assert_oauth_error(await service_token(client, service, resource=FILES), 400, "invalid_target")
    # No resource named: the default audience, as before (the list restricts what is named).
    assert (await service_token(client, service)).status_code == 200
    # Cleared: any registered resource again.
    await patch_client(client, admin, "svc", {"resources": []})
    assert (await service_token(client, service, resource=FILES)).status_code == 200


async def test_authorize_and_the_code_exchange_refuse_a_resource_not_the_clients(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None, web: str
) -> None:
    assert (await patch_client(client, admin, web, {"resources": [MCP]})).status_code == 200
    flow = Flow.new(web, scope="read")
    refused = query((await code_naming(client, flow, MCP, FILES)).headers["location"])
    assert refused["error"] == "invalid_target" and refused["state"] == flow.params["state"]

    # Granted for MCP while it was allowed; then the operator narrows the list: the exchange
    # and the refresh may no longer name it, nor fall back on it.
    flow = Flow.new(web, scope="read")
    answer = await code_naming(client, flow, MCP)
    assert answer.headers["location"].startswith(CALLBACK + "?")
    code = query(answer.headers["location"])["code"]
    tokens = (await exchange(client, code, flow, resource=MCP)).json()
    assert claims_of(tokens["access_token"])["aud"] == MCP
    await patch_client(client, admin, web, {"resources": [FILES]})
    refresh = {"grant_type": "refresh_token", "client_id": web}
    for asked in ({"resource": MCP}, {}):
        refused_refresh = await client.post(
            "/token", data={**refresh, "refresh_token": tokens["refresh_token"], **asked}
        )
        assert_oauth_error(refused_refresh, 400, "invalid_target")


async def test_the_password_grant_refuses_a_resource_not_the_clients(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None, registry: Registry
) -> None:
    await registry.client("app", public=True, grant_types=("password", "refresh_token"),
                          scopes=("read", "write"))  # fmt: skip
    await registry.user("alice", "correct horse", scopes=("read", "write"))
    await patch_client(client, admin, "app", {"resources": [FILES]})
    refused = await password_login(client, client_id="app", resource=MCP)
    assert_oauth_error(refused, 400, "invalid_target")
    allowed = await password_login(client, client_id="app", resource=FILES)
    assert allowed.status_code == 200 and claims_of(allowed.json()["access_token"])["aud"] == FILES


async def test_deleting_a_resource_a_client_names_leaves_the_client_changeable(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None, web: str
) -> None:
    """The list is checked when it is given: a resource deleted since stays in it (and gets no
    token: it is not registered) until the operator replaces the list."""
    await patch_client(client, admin, web, {"resources": [MCP, FILES]})
    assert (await client.delete(at(MCP), headers=admin)).status_code == 204
    renamed = await patch_client(client, admin, web, {"client_name": "Web"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["resources"] == [MCP, FILES]
