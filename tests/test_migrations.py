"""The migrations are the only thing that makes the schema: they must run up, down and up again
on both databases, leave exactly what the models describe, and survive replicas migrating at
once (hydra's migratest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from authserver.db import migrate
from authserver.db.models import Base
from tests._postgres import scratch_database

TABLES = {table.name for table in Base.metadata.sorted_tables}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> Iterator[str]:
    """An empty database of its own per test: the shared migrated one is other tests'."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    if postgres_url is None:
        pytest.skip("no Postgres could be found or started (set AUTHSERVER_TEST_DATABASE_URL)")
    with scratch_database(postgres_url, "mig") as url:
        yield url


@pytest.fixture
async def engine(empty_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(empty_url, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def schema_diff(engine: AsyncEngine) -> list[Any]:
    def diff(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


async def test_upgrade_downgrade_upgrade(engine: AsyncEngine) -> None:
    assert await migrate.current_revision(engine) is None

    await migrate.upgrade(engine)
    assert await table_names(engine) == TABLES | {"alembic_version"}
    assert await migrate.current_revision(engine) == migrate.head_revision()

    await migrate.downgrade(engine)
    assert await table_names(engine) == {"alembic_version"}
    assert await migrate.current_revision(engine) is None

    await migrate.upgrade(engine)
    assert await table_names(engine) == TABLES | {"alembic_version"}
    assert await migrate.current_revision(engine) == migrate.head_revision()
    assert await schema_diff(engine) == []


async def test_models_match_the_migrations(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


async def test_the_diff_sees_a_schema_that_is_not_the_models(engine: AsyncEngine) -> None:
    # Guards the checks above: an empty diff must mean "the same", not "nothing compared".
    await migrate.upgrade(engine)
    await migrate.downgrade(engine)
    diff = await schema_diff(engine)
    assert {change[1].name for change in diff if change[0] == "add_table"} == TABLES


async def test_upgrading_a_database_at_head_changes_nothing(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()
    assert await table_names(engine) == TABLES | {"alembic_version"}


@pytest.fixture
def empty_postgres(postgres_url: str | None) -> Iterator[str]:
    if postgres_url is None:
        pytest.skip("no Postgres could be found or started (set AUTHSERVER_TEST_DATABASE_URL)")
    with scratch_database(postgres_url, "mig") as url:
        yield url


@pytest.mark.postgres_only
async def test_replicas_migrating_at_once_end_at_head(empty_postgres: str) -> None:
    """Every replica may run `authserver migrate` on start; the advisory lock serialises them."""
    # One engine per replica: separate connections, as separate processes would have.
    engines = [create_async_engine(empty_postgres, poolclass=NullPool) for _ in range(3)]
    try:
        # Without the lock they deadlock on alembic_version: fail, don't hang.
        with anyio.fail_after(60):
            await asyncio.gather(*(migrate.upgrade(engine) for engine in engines))
        assert await migrate.current_revision(engines[0]) == migrate.head_revision()
        assert await table_names(engines[0]) == TABLES | {"alembic_version"}
        assert await schema_diff(engines[0]) == []
    finally:
        for engine in engines:
            await engine.dispose()
