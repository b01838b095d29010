"""Second factors on both databases: TOTP codes from pyotp accepted once, sealed secrets,
recovery codes spent once, and (Postgres) ten instances racing with one code."""

from __future__ import annotations

import asyncio
import secrets

import pyotp
import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from authserver.accounts.second_factors import (
    STEP_SECONDS,
    StoredTotp,
    accept_totp,
    new_recovery_codes,
    new_totp_secret,
    open_totp,
    recovery_code_hash,
    seal_totp,
    spend_recovery_code,
)
from authserver.db.second_factors import SqlSecondFactorStore
from authserver.keys.sealing import KeySealer

NOW = 1_800_000_015  # mid-step, so "one step either way" is unambiguous
SEALER = KeySealer(secrets.token_bytes(32))


async def add_user(engine: AsyncEngine, user_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, username, username_key, password_hash, scopes,"
                " disabled, created_at) VALUES (:id, :name, :key, 'x', '', false, 0)"
            ),
            {"id": user_id, "name": user_id, "key": user_id},
        )


async def enrolled(engine: AsyncEngine, user_id: str = "u1") -> tuple[SqlSecondFactorStore, str]:
    """A user with a TOTP factor enrolled at step NOW - 5 minutes; its secret."""
    await add_user(engine, user_id)
    store = SqlSecondFactorStore(engine)
    secret = new_totp_secret()
    factor_id = f"f-{user_id}"
    sealed = seal_totp(SEALER, factor_id, secret)
    assert await store.add_totp(factor_id, user_id, sealed, (NOW - 300) // STEP_SECONDS, NOW)
    return store, secret


def code_at(secret: str, when: int) -> str:
    return pyotp.TOTP(secret).at(when)


async def test_a_code_from_an_app_is_accepted_once(engine: AsyncEngine) -> None:
    store, secret = await enrolled(engine)
    code = code_at(secret, NOW)
    assert await accept_totp(store, SEALER, "u1", code, NOW)
    assert not await accept_totp(store, SEALER, "u1", code, NOW)  # replayed
    assert not await accept_totp(store, SEALER, "u1", code, NOW + 10)  # same step, later
    # RFC 6238 §5.2: nor an earlier step's code once a later one was accepted.
    assert not await accept_totp(store, SEALER, "u1", code_at(secret, NOW - 30), NOW)
    assert await accept_totp(store, SEALER, "u1", code_at(secret, NOW + 30), NOW + 30)


async def test_one_step_of_drift_either_way_and_no_more(engine: AsyncEngine) -> None:
    store, secret = await enrolled(engine)
    assert not await accept_totp(store, SEALER, "u1", code_at(secret, NOW - 60), NOW)
    assert not await accept_totp(store, SEALER, "u1", code_at(secret, NOW + 60), NOW)
    assert await accept_totp(store, SEALER, "u1", code_at(secret, NOW - 30), NOW)
    assert await accept_totp(store, SEALER, "u1", code_at(secret, NOW + 30), NOW)


@pytest.mark.parametrize(
    "typed", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", "0" * 10_000, "' OR 1=1 --", "\x00" * 6]
)
async def test_hostile_codes_are_refused_without_error(engine: AsyncEngine, typed: str) -> None:
    store, _ = await enrolled(engine)
    assert not await accept_totp(store, SEALER, "u1", typed, NOW)
    assert not await spend_recovery_code(store, "u1", typed, NOW)


async def test_spaces_in_a_typed_code_are_ignored(engine: AsyncEngine) -> None:
    store, secret = await enrolled(engine)
    code = code_at(secret, NOW)
    assert await accept_totp(store, SEALER, "u1", f" {code[:3]} {code[3:]} ", NOW)


async def test_a_user_without_a_factor_accepts_no_code(engine: AsyncEngine) -> None:
    await add_user(engine, "u2")
    store = SqlSecondFactorStore(engine)
    assert not await accept_totp(store, SEALER, "u2", "123456", NOW)
    assert await store.kinds("u2") == []


async def test_the_secret_is_sealed_and_bound_to_its_row(engine: AsyncEngine) -> None:
    store, secret = await enrolled(engine)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT sealed_secret FROM second_factors"))).scalar_one()
    assert secret.encode() not in bytes(stored)
    factor = await store.totp("u1")
    assert factor is not None and open_totp(SEALER, factor) == secret
    with pytest.raises(InvalidTag):  # moved onto another factor's row, it does not open
        open_totp(SEALER, StoredTotp("f-other", factor.sealed_secret, None))
    with pytest.raises(InvalidTag):  # nor under another KEK
        open_totp(KeySealer(secrets.token_bytes(32)), factor)
    assert await store.kinds("u1") == ["totp"]


async def test_one_authenticator_app_a_user(engine: AsyncEngine) -> None:
    store, _ = await enrolled(engine)
    sealed = seal_totp(SEALER, "f-second", new_totp_secret())
    assert not await store.add_totp("f-second", "u1", sealed, 0, NOW)
    assert await store.kinds("u1") == ["totp"]


async def test_recovery_codes_are_hashed_single_use_and_replaced_as_a_set(
    engine: AsyncEngine,
) -> None:
    store, _ = await enrolled(engine)
    await add_user(engine, "u2")
    codes = new_recovery_codes()
    assert len(set(codes)) == 10
    await store.replace_recovery_codes("u1", [str(recovery_code_hash(c)) for c in codes], NOW)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT code_hash FROM recovery_codes"))).scalars().all()
    assert len(stored) == 10 and not set(codes) & set(stored)

    assert not await spend_recovery_code(store, "u2", codes[0], NOW)  # another user's
    assert await spend_recovery_code(store, "u1", codes[0].upper(), NOW)  # case ignored
    assert not await spend_recovery_code(store, "u1", codes[0], NOW)  # spent
    assert await spend_recovery_code(store, "u1", codes[1].replace("-", " "), NOW)

    fresh = new_recovery_codes()
    await store.replace_recovery_codes("u1", [str(recovery_code_hash(c)) for c in fresh], NOW)
    assert not await spend_recovery_code(store, "u1", codes[2], NOW)  # the old set is gone
    assert await spend_recovery_code(store, "u1", fresh[0], NOW)


async def test_removing_factors_removes_codes_too(engine: AsyncEngine) -> None:
    store, secret = await enrolled(engine)
    codes = new_recovery_codes()
    await store.replace_recovery_codes("u1", [str(recovery_code_hash(c)) for c in codes], NOW)
    assert await store.remove_all("u1") == 1
    assert await store.kinds("u1") == []
    assert not await accept_totp(store, SEALER, "u1", code_at(secret, NOW), NOW)
    assert not await spend_recovery_code(store, "u1", codes[0], NOW)


async def test_ten_instances_racing_with_one_code_accept_it_once(
    engine: AsyncEngine, database_url: str
) -> None:
    """Separate connections, as separate processes would have, each with its own store. On
    Postgres the ten UPDATEs really run at once; SQLite serialises them, and must agree."""
    store, secret = await enrolled(engine)
    code = code_at(secret, NOW)
    engines = [create_async_engine(database_url, poolclass=NullPool) for _ in range(10)]
    try:
        stores = [SqlSecondFactorStore(e) for e in engines]
        results = await asyncio.gather(*(accept_totp(s, SEALER, "u1", code, NOW) for s in stores))
        assert sum(results) == 1
        codes = new_recovery_codes()
        await store.replace_recovery_codes("u1", [str(recovery_code_hash(codes[0]))], NOW)
        spent = await asyncio.gather(*(spend_recovery_code(s, "u1", codes[0], NOW) for s in stores))
        assert sum(spent) == 1
    finally:
        for e in engines:
            await e.dispose()
