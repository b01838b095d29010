"""`serve` bounds graceful shutdown: uvicorn gets AUTHSERVER_SHUTDOWN_TIMEOUT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from authserver import cli
from authserver.config import SettingsError, load_settings
from tests.conftest import KEK


@pytest.mark.parametrize(("value", "expected"), [(None, 10), ("3", 3)])
def test_serve_passes_the_shutdown_timeout_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, expected: int
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("AUTHSERVER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("AUTHSERVER_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("AUTHSERVER_KEY_ENCRYPTION_KEY", KEK)
    if value is not None:
        monkeypatch.setenv("AUTHSERVER_SHUTDOWN_TIMEOUT", value)
    assert cli.main(["serve"]) == 0
    assert seen["timeout_graceful_shutdown"] == expected


def test_the_cleanup_and_shutdown_settings_are_checked() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "AUTHSERVER_SHUTDOWN_TIMEOUT": "0",
                "AUTHSERVER_PURGE_INTERVAL": "-1",
                "AUTHSERVER_AUDIT_RETENTION_DAYS": "0",
            }
        )
    assert len(caught.value.problems) == 3
    assert load_settings({"AUTHSERVER_PURGE_INTERVAL": "0"}).purge_interval == 0
