"""A refresh token's stored state, read as committed on a connection of its own: in its
family's row when live or spent last, in spent_refresh_tokens when spent before (0030); in
refresh_tokens for a token from before 0030."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.columns import stored_hash
from authserver.tokens.refresh import parse_refresh_token

_LIVE = "SELECT 1 FROM refresh_families WHERE id = :family_id AND token_hash = :h"
_LAST = "SELECT parent_spent_at FROM refresh_families WHERE id = :family_id AND parent_hash = :h"
_SPENT = (
    "SELECT spent_at FROM spent_refresh_tokens WHERE family_id = :family_id AND token_hash = :h"
)
_LEGACY = "SELECT spent_at FROM refresh_tokens WHERE token_hash = :h"


async def spent_at(engine: AsyncEngine, token: str) -> int | None:
    """When `token` was spent; None while it is live. AssertionError if it was never issued."""
    key = parse_refresh_token(token)
    params = {"family_id": key.family_id, "h": stored_hash(key.hash)}
    async with engine.connect() as conn:
        if key.family_id is None:
            legacy: int | None = (await conn.execute(text(_LEGACY), params)).scalar_one()
            return legacy
        if (await conn.execute(text(_LIVE), params)).first() is not None:
            return None
        last = (await conn.execute(text(_LAST), params)).scalar()
        found = last or (await conn.execute(text(_SPENT), params)).scalar()
    assert found is not None, "a token its family never issued"
    spent: int = found
    return spent


async def family_revoked_at(engine: AsyncEngine, token: str) -> int | None:
    """The revocation time of `token`'s family (a token that names it)."""
    key = parse_refresh_token(token)
    async with engine.connect() as conn:
        found: int | None = (
            await conn.execute(
                text("SELECT revoked_at FROM refresh_families WHERE id = :family_id"),
                {"family_id": key.family_id},
            )
        ).scalar_one()
    return found
