"""One DPoP proof's jti sent to two instances at once (two engines, each its own pool, on one
database): the primary key of dpop_proofs lets at most one of them accept it (RFC 9449 §11.1)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.config import Settings
from authserver.db.dpop import SqlProofStore
from authserver.db.engine import make_engine
from authserver.db.purge import purge

ROUNDS = 10
RACERS = 10  # per instance


async def test_one_proof_raced_on_two_instances_is_accepted_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    first, second = make_engine(settings), make_engine(settings)
    try:
        stores = [SqlProofStore(first), SqlProofStore(second)]
        for round_ in range(ROUNDS):
            key = f"proof-{round_}"
            results = await asyncio.gather(
                *(store.first_use(key, 1_060, 1_000) for store in stores for _ in range(RACERS))
            )
            assert results.count(True) == 1, results
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_key_whose_window_is_over_is_taken_again_and_purged(
    engine: AsyncEngine, settings: Settings
) -> None:
    store = SqlProofStore(engine)
    assert await store.first_use("k", 1_060, 1_000)
    assert not await store.first_use("k", 1_070, 1_059)
    assert await store.first_use("k", 1_130, 1_070)  # the old row's window is over
    assert await store.first_use("other", 1_010, 1_000)
    purged = await purge(engine, settings, 1_100)
    assert purged is not None and purged.dpop_proofs == 1
    assert not await store.first_use("k", 1_130, 1_100)
