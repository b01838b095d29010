"""Runs the alembic migrations, the only thing that makes or changes the schema."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.db.engine import is_postgres

_PACKAGED = Path(__file__).resolve().parent.parent / "_migrations"  # inside an installed wheel
_SOURCE = Path(__file__).resolve().parents[2] / "migrations"  # in a checkout
# Names the advisory lock that lets every replica run `migrate` at once (alembic #633).
_MIGRATION_LOCK = 0x6D696772  # "migr"


def alembic_config() -> Config:
    config = Config()
    location = _PACKAGED if _PACKAGED.is_dir() else _SOURCE
    config.set_main_option("script_location", str(location))
    return config


@functools.cache  # the scripts a process ships with do not change while it runs
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run(engine, lambda config: command.downgrade(config, revision))


async def _run(engine: AsyncEngine, step: object) -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        step(config)  # type: ignore[operator]

    async with engine.connect() as conn:
        if is_postgres(engine):
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            await conn.commit()
        try:
            await conn.run_sync(run)
            await conn.commit()
        finally:
            if is_postgres(engine):
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK}
                )
                await conn.commit()
