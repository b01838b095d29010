"""Rotating the key-encryption key: `authserver keys rewrap` and the switch with no downtime.

The store work runs on both databases; the command runs for real in a subprocess on SQLite.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from pathlib import Path

import anyio
import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.accounts.second_factors import open_totp, seal_totp
from authserver.app import create_app
from authserver.config import Settings
from authserver.keys.manager import reload_interval
from authserver.keys.ring import make_key
from authserver.keys.sealing import KeySealer
from authserver.services import Services
from tests.conftest import KEK, Clock, Registry, make_settings
from tests.test_cli import Cli, assert_one_line_error, key_rows, make_cli, sqlite_url_in

OLD = base64.b64decode(KEK)
NEW = bytes(range(32))
NEW_B64 = base64.b64encode(NEW).decode()


async def sealed_rows(engine: AsyncEngine) -> dict[str, bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT kid, sealed_private_key FROM signing_keys"))
        return {row.kid: bytes(row.sealed_private_key) for row in rows}


def test_a_sealer_opens_under_its_kek_or_an_older_one_and_seals_under_its_own() -> None:
    old, new = KeySealer(OLD), KeySealer(NEW)
    switching = KeySealer(NEW, OLD)
    sealed_old, sealed_new = old.seal("kid", b"pem"), new.seal("kid", b"pem")

    assert switching.open("kid", sealed_old) == switching.open("kid", sealed_new) == b"pem"
    assert new.open("kid", switching.seal("kid", b"pem")) == b"pem"
    with pytest.raises(InvalidTag):
        new.open("kid", sealed_old)
    with pytest.raises(InvalidTag):
        KeySealer(bytes(32), OLD, NEW).open("other-kid", sealed_old)  # the kid still binds


async def test_rewrap_reseals_every_key_under_the_new_kek_in_one_audited_step(
    fresh_keys: None, services: Services, engine: AsyncEngine, settings: Settings, clock: Clock
) -> None:
    await services.keys.rotate("test", force=True)  # a retired key too
    before = await sealed_rows(engine)
    assert len(before) == 3

    count = await services.keys.rewrap(NEW, "cli")

    after = await sealed_rows(engine)
    assert count == 3 and after.keys() == before.keys()
    for kid, sealed in after.items():
        assert sealed != before[kid]
        assert KeySealer(NEW).open(kid, sealed) == KeySealer(OLD).open(kid, before[kid])
        with pytest.raises(InvalidTag):
            KeySealer(OLD).open(kid, sealed)
    async with engine.connect() as conn:
        audit = (
            await conn.execute(
                text("SELECT actor, detail FROM audit_events WHERE action = 'keys.rewrapped'")
            )
        ).all()
    assert [(row.actor, row.detail) for row in audit] == [
        ("cli", '{"keys": 3, "second_factors": 0}')
    ]
    # An instance given only the new KEK starts and signs with the same active key.
    new_only = make_settings(settings.database_url, settings.keys_dir, key_encryption_key=NEW_B64)
    second = create_app(new_only, clock=clock)
    async with second.router.lifespan_context(second):
        assert second.state.services.keys.ring.signing.kid == services.keys.ring.signing.kid


async def test_rewrap_reseals_the_authenticator_apps_secrets_too(
    fresh_keys: None, services: Services, registry: Registry, settings: Settings, clock: Clock
) -> None:
    user = await registry.user("alice")
    sealed = seal_totp(services.factor_sealer, "f1", "JBSWY3DPEHPK3PXP")
    assert await services.second_factors.add_totp("f1", user, sealed, 0, clock())

    await services.keys.rewrap(NEW, "cli")

    # An instance given only the new KEK (the old one dropped, as the switch ends) still opens
    # the secret, so its user can finish signing in; the old KEK alone no longer does.
    stored = await services.second_factors.totp(user)
    assert stored is not None and stored.sealed_secret != sealed
    assert open_totp(KeySealer(NEW), stored) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(InvalidTag):
        open_totp(KeySealer(OLD), stored)


async def test_rewrap_changes_nothing_if_one_key_does_not_open(
    fresh_keys: None, services: Services, engine: AsyncEngine, clock: Clock
) -> None:
    stranger = make_key("EdDSA", "retired", KeySealer(bytes(32)), clock())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO signing_keys (kid, alg, state, public_jwk, sealed_private_key,"
                " created_at, retired_at) VALUES (:kid, 'EdDSA', 'retired', '{}', :sealed, 0, 0)"
            ),
            {"kid": stranger.record.kid, "sealed": stranger.record.sealed_private_key},
        )
    before = await sealed_rows(engine)

    with pytest.raises(InvalidTag):
        await services.keys.rewrap(NEW, "cli")

    assert await sealed_rows(engine) == before
    async with engine.connect() as conn:
        assert not await conn.scalar(
            text("SELECT COUNT(*) FROM audit_events WHERE action = 'keys.rewrapped'")
        )


@pytest.mark.parametrize("settings_overrides", [{"jwks_max_age": "4"}])
async def test_an_instance_left_with_the_old_kek_keeps_serving_and_says_why(
    fresh_keys: None,
    app: Starlette,
    services: Services,
    settings: Settings,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kid = services.keys.ring.signing.kid
    # The documented order: instances first learn the new KEK (the old one tried second)...
    switching = make_settings(
        settings.database_url,
        settings.keys_dir,
        key_encryption_key=NEW_B64,
        key_encryption_key_previous=KEK,
        jwks_max_age="4",
    )
    second = create_app(switching, clock=clock)
    async with second.router.lifespan_context(second):
        other: Services = second.state.services
        assert other.keys.ring.signing.kid == kid  # opened under the previous KEK
        # ... then the rows are rewrapped; the switching instance reloads them as before,
        await other.keys.rewrap(NEW, "cli")
        await other.keys.reload()
        assert other.keys.ring.signing.kid == kid

        # while one still on the old KEK alone keeps its loaded keys and logs one clear line.
        with pytest.raises(InvalidTag):
            await services.keys.reload()
        caplog.set_level(logging.ERROR, logger="authserver")
        with anyio.fail_after(reload_interval(settings) * 3 + 2):
            while "does not open under" not in caplog.text:
                await anyio.sleep(0.05)
        assert services.keys.ring.signing.kid == kid
        assert "Traceback" not in caplog.text
        minted = await services.mint(sub="u", client_id="c", scope="", sid=None)
        assert other.verify(minted.token)["sub"] == "u"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path, sqlite_url_in(tmp_path))


def sealed_in(tmp_path: Path) -> dict[str, bytes]:
    with sqlite3.connect(tmp_path / "authserver.db") as db:
        return dict(db.execute("SELECT kid, sealed_private_key FROM signing_keys"))


def test_the_rewrap_command(cli: Cli, tmp_path: Path) -> None:
    rows = key_rows(cli("keys", "list"))
    before = sealed_in(tmp_path)

    assert_one_line_error(cli("keys", "rewrap"), "AUTHSERVER_NEW_KEY_ENCRYPTION_KEY")
    assert_one_line_error(
        cli("keys", "rewrap", env={"NEW_KEY_ENCRYPTION_KEY": "bm90IDMyIGJ5dGVz"}), "32 bytes"
    )
    wrong = {"KEY_ENCRYPTION_KEY": base64.b64encode(bytes(32)).decode()}
    wrong["NEW_KEY_ENCRYPTION_KEY"] = NEW_B64
    assert_one_line_error(cli("keys", "rewrap", env=wrong), "nothing was changed")
    assert sealed_in(tmp_path) == before

    done = cli("keys", "rewrap", env={"NEW_KEY_ENCRYPTION_KEY": NEW_B64})

    assert done.returncode == 0, done.stderr
    assert "rewrapped 2 signing keys" in done.stderr
    assert "AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS" in done.stderr
    for kid, sealed in sealed_in(tmp_path).items():
        assert KeySealer(NEW).open(kid, sealed) == KeySealer(OLD).open(kid, before[kid])
    # The old KEK alone no longer opens them; the new one does, and so does the pair.
    assert_one_line_error(cli("keys", "list"), "cannot be decrypted")
    assert key_rows(cli("keys", "list", env={"KEY_ENCRYPTION_KEY": NEW_B64})) == rows
    pair = {"KEY_ENCRYPTION_KEY": KEK, "KEY_ENCRYPTION_KEY_PREVIOUS": NEW_B64}
    assert key_rows(cli("keys", "list", env=pair)) == rows


def test_the_rewrap_command_reads_the_new_kek_from_a_private_file(cli: Cli, tmp_path: Path) -> None:
    cli("keys", "list")
    kek_file = tmp_path / "new-kek"
    kek_file.write_text(NEW_B64 + "\n")
    kek_file.chmod(0o644)
    assert_one_line_error(cli("keys", "rewrap", "--new-kek-file", str(kek_file)), "chmod 600")
    kek_file.chmod(0o600)

    done = cli("keys", "rewrap", "--new-kek-file", str(kek_file))

    assert done.returncode == 0, done.stderr
    assert key_rows(cli("keys", "list", env={"KEY_ENCRYPTION_KEY": NEW_B64}))
