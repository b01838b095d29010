import httpx

from tests.conftest import Login


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, login: Login
) -> None:
    first = await client.post(
        "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    assert first.status_code == 200, first.text
    reuse = await client.post(
        "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    assert reuse.json()["error"] == "invalid_grant"
    newest = await client.post(
        "/refresh", data={"refresh_token": first.json()["refresh_token"], "client_id": "spa"}
    )
    assert newest.status_code == 400
