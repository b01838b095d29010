"""AUTHSERVER_DATABASE_DIRECT_URL: Postgres itself, beside a URL that goes through a pooler."""

from __future__ import annotations

import pytest

from authserver.config import SettingsError, load_settings
from authserver.db.engine import behind_pooler

POOLED = "postgresql+asyncpg://authserver@127.0.0.1:6432/authserver"
DIRECT = "postgresql+asyncpg://authserver@127.0.0.1:5432/authserver"


def test_unset_means_the_url_is_postgres_itself() -> None:
    settings = load_settings({"AUTHSERVER_DATABASE_URL": DIRECT})
    assert settings.database_direct_url is None
    assert not behind_pooler(settings)


def test_set_beside_another_url_means_a_pooler_in_between() -> None:
    settings = load_settings(
        {"AUTHSERVER_DATABASE_URL": POOLED, "AUTHSERVER_DATABASE_DIRECT_URL": DIRECT}
    )
    assert settings.database_direct_url == DIRECT
    assert behind_pooler(settings)
    same = load_settings(
        {"AUTHSERVER_DATABASE_URL": DIRECT, "AUTHSERVER_DATABASE_DIRECT_URL": DIRECT}
    )
    assert not behind_pooler(same)


def test_it_must_be_postgres() -> None:
    with pytest.raises(SettingsError, match="AUTHSERVER_DATABASE_DIRECT_URL: must start with"):
        load_settings({"AUTHSERVER_DATABASE_DIRECT_URL": "sqlite+aiosqlite:///x.db"})
