"""A server whose database holds sealed keys but which has no KEK set and no kek file says so
at start, and writes nothing (it used to make a new kek file, then say the key was wrong)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from authserver.app import KekMissing, create_app
from tests.conftest import make_settings


async def test_a_server_without_the_kek_of_its_keys_says_so_and_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path / "keys")
    sealed = create_app(settings)
    async with sealed.router.lifespan_context(sealed):  # the keys exist, sealed under the KEK
        pass
    bare = create_app(replace(settings, key_encryption_key=None))
    with pytest.raises(KekMissing, match="AUTHSERVER_KEY_ENCRYPTION_KEY is not set"):
        async with bare.router.lifespan_context(bare):
            pass
    assert not (tmp_path / "keys").exists()
