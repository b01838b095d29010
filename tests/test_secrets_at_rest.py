"""What a stolen database dump gives an attacker: no usable secret."""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Login, Registry


async def everything_stored(engine: AsyncEngine) -> str:
    """Every value of every row of every table, as one string."""
    dump: list[str] = []
    async with engine.connect() as conn:
        tables = ("users", "clients", "signing_keys", "refresh_families", "refresh_tokens",
                  "spent_refresh_tokens")  # fmt: skip
        for table in tables:
            for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all():
                dump.extend(
                    value.hex() if isinstance(value, bytes) else str(value) for value in row
                )
    return "\n".join(dump)


async def test_refresh_tokens_and_passwords_are_stored_only_as_hashes(
    client: httpx.AsyncClient, login: Login, engine: AsyncEngine
) -> None:
    issued = [login.refresh_token]
    for _ in range(2):  # the first token then in spent_refresh_tokens, the second the parent
        rotated = await client.post(
            "/refresh", data={"refresh_token": issued[-1], "client_id": "spa"}
        )
        assert rotated.status_code == 200
        issued.append(rotated.json()["refresh_token"])
    dump = await everything_stored(engine)
    for token in issued:  # `<family id>.<secret>` (0030): nor the secret alone
        assert token not in dump
        assert token.rpartition(".")[2] not in dump
    assert "correct horse" not in dump
    assert "$argon2id$" in dump


async def test_client_secrets_are_stored_only_as_hashes(
    registry: Registry, engine: AsyncEngine
) -> None:
    secret = await registry.client("svc")
    assert secret is not None
    assert secret not in await everything_stored(engine)


async def test_private_signing_keys_are_sealed(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT sealed_private_key FROM signing_keys"))).all()
    assert len(rows) >= 2  # the active and the next key
    for (sealed,) in rows:
        assert b"PRIVATE KEY" not in sealed
        for loader in (serialization.load_pem_private_key, serialization.load_der_private_key):
            try:
                loader(sealed, password=None)
            except ValueError:
                continue
            raise AssertionError("a private key is stored in the clear")
