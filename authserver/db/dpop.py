"""SQL behind DPoP's replay check: a proof's key inserted once, in one statement (its own,
or the grant's: `proved`)."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.direct import fetch_row
from authserver.db.engine import is_postgres, single_statements
from authserver.tokens.dpop import FirstUse, replayed

# The primary key settles a race between instances: of two INSERTs of one key, one inserts.
# A row whose window is over may be taken again (the purge may not have come by yet); its
# proof could not pass the iat check any more, so this is a new proof with the same jti.
_INSERT = """INSERT INTO dpop_proofs (proof_key, expires_at)
    VALUES (CAST(:proof_key AS VARCHAR), :proof_expires_at)
    ON CONFLICT (proof_key) DO UPDATE SET expires_at = excluded.expires_at
    WHERE dpop_proofs.expires_at <= :proof_now
    RETURNING proof_key"""
FIRST_USE = text(_INSERT)


# The same as a grant's own statement's first CTE (db/families.py, db/codes.py: `proved`). A
# racing statement with the same jti waits on this one's row and then finds it taken. The
# spend's condition on it is an uncorrelated subquery, a one-time filter evaluated before the
# spend reads a row, so the jti's row is always locked before the token's or the code's: no
# deadlock between two grants.
def proved(ctes: str) -> TextClause:
    """A grant's statement (`ctes`: its data-modifying CTEs, the spend named `spent` with a
    `{proved}` slot in its WHERE) with the proof's jti recorded first and the spend only on
    its first use. One row, always: `first_use`, and the spent row's columns (NULL when
    nothing was spent: the jti is recorded all the same, as a proof checked before the grant
    was)."""
    return text(f"""
WITH proof AS (
    {_INSERT}
), {ctes.format(proved="AND EXISTS (SELECT 1 FROM proof)")}
SELECT EXISTS (SELECT 1 FROM proof) AS first_use, s.*
FROM (VALUES (1)) AS one LEFT JOIN spent AS s ON TRUE
""")


async def fetch_proved(
    engine: AsyncEngine,
    statement: TextClause,
    params: dict[str, Any],
    first_use: FirstUse,
    spent_column: str,
) -> asyncpg.Record | None:
    """Runs a `proved` statement (Postgres, db/direct.py): the spent row, or None when
    nothing was spent; InvalidDPoPProof, nothing spent, when the jti was used already."""
    row = await fetch_row(engine, statement, {**params, **proof_params(first_use)})
    assert row is not None  # one row, always
    first_use.recorded = True
    if not row["first_use"]:
        raise replayed()
    return None if row[spent_column] is None else row


def proof_params(first_use: FirstUse) -> dict[str, object]:
    return {
        "proof_key": first_use.key,
        "proof_expires_at": first_use.expires_at,
        "proof_now": first_use.now,
    }


class SqlProofStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._direct = engine if is_postgres(engine) else None
        self._engine = single_statements(engine)

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        params = proof_params(FirstUse(key, expires_at, now))
        if self._direct is not None:
            # Every DPoP request but a refresh's or a code exchange's runs it: straight
            # through asyncpg (db/direct.py), its own transaction as before.
            return await fetch_row(self._direct, FIRST_USE, params) is not None
        async with self._engine.begin() as conn:
            row = (await conn.execute(FIRST_USE, params)).first()
        return row is not None
