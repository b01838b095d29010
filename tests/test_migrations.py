"""The migrations are the only thing that makes the schema: they must run up, down and up again
on both databases, leave exactly what the models describe, and survive replicas migrating at
once (hydra's migratest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pyotp
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from authserver.accounts.consents import Grant
from authserver.accounts.links import RESET, Link, password_fingerprint
from authserver.accounts.login_sessions import Browser
from authserver.accounts.passkeys import PASSKEY, SIGN_IN, Challenge, StoredPasskey
from authserver.accounts.second_factors import (
    accept_totp,
    new_recovery_codes,
    new_totp_secret,
    recovery_code_hash,
    seal_totp,
)
from authserver.audit import AuditEvent
from authserver.clients import Client, ClientChanges
from authserver.config import Settings
from authserver.db import migrate
from authserver.db.accounts import SqlClientStore, SqlUserStore
from authserver.db.codes import SqlCodeStore
from authserver.db.columns import stored_hash
from authserver.db.consents import SqlConsentStore
from authserver.db.denylist import SqlDenylist
from authserver.db.dpop import SqlProofStore
from authserver.db.families import SqlFamilyStore
from authserver.db.links import SqlLinkStore
from authserver.db.login_sessions import SqlLoginSessionStore
from authserver.db.models import Base
from authserver.db.outbox import SqlOutbox
from authserver.db.passkeys import SqlPasskeyStore
from authserver.db.purge import purge
from authserver.db.registration import SqlRegistrationStore
from authserver.db.resources import SqlResourceStore
from authserver.db.second_factors import SqlSecondFactorStore
from authserver.errors import InvalidGrant
from authserver.keys.sealing import KeySealer
from authserver.mail.compose import Mail
from authserver.registration import InitialAccessToken
from authserver.tokens.refresh import hash_token, parse_refresh_token, rotate
from authserver.tokens.resources import Resource
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


async def column_names(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda sync: inspect(sync).get_columns(table))
    return {column["name"] for column in columns}


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


# --- 0008: refresh storage in bytes and uuids, over rows the code before it wrote ------------

NOW = 1_800_000_000
FAMILY = "6f1d2c3b-4a59-4e87-9d10-2b3c4d5e6f70"
PARENT, CHILD = "parent-refresh-token", "child-refresh-token"


async def seed_before_0008(engine: AsyncEngine) -> None:
    """What a server at 0007 left: a family whose first token was spent for a live child
    (hashes as 64 hex characters, the id as a 36-character string), and the used
    authorization code that started it."""
    rows = [
        "INSERT INTO users (id, username, password_hash, scopes, disabled, created_at)"
        " VALUES ('u1', 'alice', 'x', 'profile', false, 0)",
        "INSERT INTO clients (client_id, secret_hash, grant_types, scopes, refresh_delivery,"
        " created_at) VALUES ('app', NULL, 'refresh_token', 'profile', 'body', 0)",
        "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at)"
        f" VALUES ('{FAMILY}', 'u1', 'app', 'profile', {NOW - 60}, {NOW + 86_400})",
        "INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at,"
        f" spent_at) VALUES ('{hash_token(PARENT)}', '{FAMILY}', NULL, {NOW - 60},"
        f" {NOW + 3600}, {NOW - 30})",
        "INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)"
        f" VALUES ('{hash_token(CHILD)}', '{FAMILY}', '{hash_token(PARENT)}', {NOW - 30},"
        f" {NOW + 3600})",
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, login_session_id,"
        " redirect_uri, redirect_uri_given, code_challenge, scope, auth_time, created_at,"
        f" expires_at, used_at, family_id) VALUES ('{'c' * 64}', 'app', 'u1', 's1',"
        f" 'https://app.test/cb', true, 'x', 'profile', 0, {NOW - 70}, {NOW + 60}, {NOW - 60},"
        f" '{FAMILY}')",
    ]
    async with engine.begin() as conn:
        for row in rows:
            await conn.execute(text(row))


@pytest.fixture
async def pooled(empty_url: str) -> AsyncIterator[AsyncEngine]:
    """For the stores: their hot statements borrow a pooled connection (db/direct.py), which
    a NullPool would close outside the event loop's greenlet."""
    engine = create_async_engine(empty_url)
    yield engine
    await engine.dispose()


async def stored_tokens(engine: AsyncEngine) -> set[tuple[Any, ...]]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT token_hash, family_id, parent_hash, spent_at FROM refresh_tokens")
        )
        return {tuple(row) for row in found}


async def test_0008_converts_old_rows_and_they_still_rotate(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    before = await stored_tokens(engine)

    await migrate.upgrade(engine, "0008")

    # Each hash is now its 32 bytes, the same SHA-256.
    tokens = await stored_tokens(engine)
    assert {(h, str(f), p, s) for h, f, p, s in tokens} == {
        (stored_hash(hash_token(PARENT)), FAMILY, None, NOW - 30),
        (stored_hash(hash_token(CHILD)), FAMILY, stored_hash(hash_token(PARENT)), None),
    }
    # Today's code reads columns of later revisions too (the rotation reads users.roles, 0010).
    await migrate.upgrade(engine)
    store = SqlFamilyStore(pooled)
    found = await store.find(parse_refresh_token(CHILD))
    assert found is not None and found.family.id == FAMILY and found.spent_at is None
    code = await SqlCodeStore(pooled).find("c" * 64)
    assert code is not None and code.family_id == FAMILY

    # The live child rotates in its family...
    rotated = await rotate(store, CHILD, client_id="app", now=NOW, refresh_ttl=3600, grace=0)
    assert rotated.family.id == FAMILY
    assert (await rotate(
        store, rotated.refresh_token, client_id="app", now=NOW + 1, refresh_ttl=3600, grace=0
    )).family.id == FAMILY  # fmt: skip
    # ... and the parent spent before the upgrade is still recognised as reuse.
    with pytest.raises(InvalidGrant, match="reuse"):
        await rotate(store, PARENT, client_id="app", now=NOW + 2, refresh_ttl=3600, grace=0)
    family = await store.get(FAMILY)
    assert family is not None and family.revoked_at == NOW + 2

    # Down again: the rows go back to hex and strings, as 0007's code reads them.
    await migrate.downgrade(engine, "0007")
    old = {(h, str(f), p, s) for h, f, p, s in await stored_tokens(engine)}
    # The tokens written before the upgrade come back as they were (the child since spent).
    assert {row[:3] for row in old if row[0] in {h for h, *_ in before}} == {
        row[:3] for row in before
    }
    assert all(isinstance(h, str) and len(h) == 64 for h, *_ in old)
    assert len(old) == 4  # the two rotations' tokens came down too
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []
    assert (await store.find(parse_refresh_token(CHILD))) is not None


async def test_a_sid_that_is_no_uuid_finds_no_family(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    """Family ids are `uuid` on Postgres: a sid from a request that is not one must find
    nothing, as on SQLite, rather than fail the statement."""
    await migrate.upgrade(engine)
    await seed_before_0008_at_head(engine)
    store, denylist = SqlFamilyStore(pooled), SqlDenylist(pooled)
    for sid in ("not-a-uuid", FAMILY.upper(), FAMILY.replace("-", ""), ""):
        assert await store.get(sid) is None
        assert await store.revoke(sid, "admin_revoked", NOW) is False
        assert await denylist.access_revoked("jti", sid, NOW) is True
    assert (await store.get(FAMILY)) is not None
    assert await denylist.access_revoked("jti", FAMILY, NOW) is False


async def seed_before_0008_at_head(engine: AsyncEngine) -> None:
    await migrate.downgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine)


# --- 0009: one account per username in any case, over rows written before it ----------


async def seed_users(engine: AsyncEngine, *names: str) -> None:
    async with engine.begin() as conn:
        for number, name in enumerate(names):
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, scopes, disabled,"
                    " created_at) VALUES (:id, :name, 'x', 'profile', false, 0)"
                ),
                {"id": f"u{number}", "name": name},
            )


async def test_0009_keys_existing_usernames_and_logins_find_them_in_any_case(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0008")
    await seed_users(engine, "Bob", "carol", "\uff24ave")

    await migrate.upgrade(engine)

    store = SqlUserStore(pooled)
    for typed, sub in [("bob", "u0"), ("BOB", "u0"), ("Carol", "u1"), ("dave", "u2")]:
        found = await store.by_username(typed)
        assert found is not None and found.id == sub, typed
    shown = await store.by_username("bob")
    assert shown is not None and shown.username == "Bob"  # kept as given
    assert await schema_diff(engine) == []


async def test_0009_stops_on_usernames_that_fold_to_one_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    await migrate.upgrade(engine, "0008")
    await seed_users(engine, "alice", "Alice", "ALICE", "bob")

    with pytest.raises(Exception, match=r"'ALICE' \(sub u2\), 'Alice' \(sub u1\), 'alice'"):
        await migrate.upgrade(engine)

    assert await migrate.current_revision(engine) == "0008"
    async with engine.connect() as conn:
        names = (await conn.execute(text("SELECT username FROM users"))).scalars().all()
    assert sorted(names) == ["ALICE", "Alice", "alice", "bob"]  # nothing merged


# --- 0010: profiles, over users written before it ---------------------------------------


async def test_0010_keeps_existing_users_up_and_down_and_enforces_one_address(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0009")
    await seed_users(engine, "bob", "carol")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET username_key = username"))

    await migrate.upgrade(engine)

    store = SqlUserStore(pooled)
    bob = await store.by_username("bob")
    assert bob is not None and bob.id == "u0" and bob.scopes == ("profile",)
    assert bob.profile.email is None and bob.profile.roles == ()
    assert bob.profile.email_verified is False
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET email_key = 'b@example.org' WHERE id = 'u0'"))
    with pytest.raises(IntegrityError):  # the database, not the code, keeps one owner
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE users SET email_key = 'b@example.org' WHERE id = 'u1'"))
    assert await schema_diff(engine) == []

    await migrate.downgrade(engine, "0009")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, username FROM users ORDER BY id"))).all()
    assert [tuple(row) for row in rows] == [("u0", "bob"), ("u1", "carol")]
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0012: clients' names and origins, over rows written before it -------------------------


async def test_0012_keeps_existing_clients_working_without_a_name_or_origins_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0011")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO clients (client_id, secret_hash, grant_types, scopes,"
                " refresh_delivery, created_at, redirect_uris, post_logout_redirect_uris,"
                " disabled) VALUES ('old', NULL, 'refresh_token', 'profile', 'cookie', 0,"
                " 'https://app.example/cb', '', false)"
            )
        )

    await migrate.upgrade(engine)

    store = SqlClientStore(pooled)
    old = await store.get("old")
    assert old is not None
    assert (old.client_name, old.allowed_origins, old.display_name) == (None, (), "old")
    assert old.redirect_uris == ("https://app.example/cb",)
    changes = ClientChanges(client_name="Old App", allowed_origins=("https://app.example",))
    assert await store.update("old", changes, 1, []) is not None
    assert await store.origins_in_use() == {"https://app.example"}
    assert await schema_diff(engine) == []

    await migrate.downgrade(engine, "0011")
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT client_id, refresh_delivery FROM clients"))).all()
    assert [tuple(row) for row in kept] == [("old", "cookie")]
    await migrate.upgrade(engine)
    again = await SqlClientStore(pooled).get("old")
    assert again is not None and again.client_name is None and again.allowed_origins == ()


# --- 0011: the mail outbox, added beside rows written before it ------------------------------


async def test_0011_adds_the_outbox_beside_existing_rows_and_takes_it_away_again(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0008")
    await seed_users(engine, "alice")  # as written before 0009, which keys its name
    await migrate.upgrade(engine, "0009")

    await migrate.upgrade(engine, "0011")

    outbox = SqlOutbox(pooled)
    mail = Mail("alice@example.test", "Hello", "text", "<p>html</p>", "test")
    mail_id = await outbox.enqueue(mail, NOW)
    [claimed] = await outbox.claim("c", NOW, 60, 10)
    assert (claimed.id, claimed.mail, claimed.attempts) == (mail_id, mail, 1)
    assert (await SqlUserStore(pooled).by_username("alice")) is not None

    # Down: the outbox goes, with the mail still in it; the users stay.
    await migrate.downgrade(engine, "0010")
    assert "mail_outbox" not in await table_names(engine)
    assert (await SqlUserStore(pooled).by_username("alice")) is not None
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0013: login sessions' user agent, over rows written before it -------------------------


async def test_0013_keeps_existing_login_sessions_live_without_a_user_agent_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0012")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, username, username_key, password_hash, scopes,"
                " disabled, created_at) VALUES ('u1', 'old', 'old', 'x', '', false, 0)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO login_sessions (id, token_hash, user_id, created_at, last_used_at,"
                " expires_at) VALUES ('s1', :hash, 'u1', 10, 10, 4000000000)"
            ),
            {"hash": "a" * 64},
        )

    await migrate.upgrade(engine)

    store = SqlLoginSessionStore(pooled)
    assert await store.browsers("u1", 20, 3600) == [Browser("s1", 10, 10, 4000000000, None)]
    assert await schema_diff(engine) == []
    await migrate.downgrade(engine, "0012")
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT id, user_id FROM login_sessions"))).all()
    assert [tuple(row) for row in kept] == [("s1", "u1")]
    await migrate.upgrade(engine)


# --- 0015: second factors, added beside rows written before it -----------------------------


async def test_0015_adds_second_factors_beside_existing_users_and_takes_them_away_again(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0013")
    await seed_users(engine, "alice")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET username_key = username"))
        await conn.execute(
            text(
                "INSERT INTO clients (client_id, secret_hash, grant_types, scopes,"
                " refresh_delivery, created_at) VALUES ('app', NULL, 'authorization_code',"
                " 'openid', 'body', 0)"
            )
        )
        # A code (and its session) from before: the password alone.
        await conn.execute(
            text(
                "INSERT INTO login_sessions (id, token_hash, user_id, created_at, last_used_at,"
                " expires_at) VALUES ('s1', :hash, 'u0', 10, 10, 4000000000)"
            ),
            {"hash": "a" * 64},
        )
        await conn.execute(
            text(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id,"
                " login_session_id, redirect_uri, redirect_uri_given, code_challenge, scope,"
                " auth_time, created_at, expires_at) VALUES (:h, 'app', 'u0', 's1',"
                " 'https://app.test/cb', true, 'x', 'openid', 10, 10, 4000000000)"
            ),
            {"h": "c" * 64},
        )

    await migrate.upgrade(engine)
    old_code = await SqlCodeStore(pooled).find("c" * 64)
    assert old_code is not None and old_code.code.amr == ("pwd",)  # NULL reads as before

    store = SqlSecondFactorStore(pooled)
    assert await store.kinds("u0") == []  # an existing user has no factor, signs in as before
    sealer = KeySealer(b"k" * 32)
    secret = new_totp_secret()
    assert await store.add_totp("f1", "u0", seal_totp(sealer, "f1", secret), 0, NOW)
    code = pyotp.TOTP(secret).at(NOW)
    assert await accept_totp(store, sealer, "u0", code, NOW)
    assert not await accept_totp(store, sealer, "u0", code, NOW)
    codes = new_recovery_codes()
    await store.replace_recovery_codes("u0", [str(recovery_code_hash(c)) for c in codes], NOW)
    assert await schema_diff(engine) == []

    # Down: the factors and codes go with their tables; the users stay.
    await migrate.downgrade(engine, "0013")
    assert not {"second_factors", "recovery_codes"} & await table_names(engine)
    assert (await SqlUserStore(pooled).by_username("alice")) is not None
    await migrate.upgrade(engine)
    assert await store.kinds("u0") == []


# --- 0016: one-time links in mail, beside users written before it -----------------------------


async def test_0016_adds_links_for_existing_users_and_takes_them_away_again(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0008")
    await seed_users(engine, "alice")
    await migrate.upgrade(engine, "0015")

    await migrate.upgrade(engine)

    alice = await SqlUserStore(pooled).by_username("alice")
    assert alice is not None
    store = SqlLinkStore(pooled)
    fingerprint = password_fingerprint(alice.password_hash)
    link = Link("a" * 64, RESET, alice.id, NOW, NOW + 60, fingerprint)
    await store.issue(link, Mail("alice@example.test", "Reset", "text", "<p>html</p>"))
    assert await store.user_of("a" * 64, RESET, NOW) == alice.id
    assert await store.spend_reset("a" * 64, "new-hash", NOW, lambda user: AuditEvent(
        NOW, user, "user.password_reset", user, user=user
    )) == alice.id  # fmt: skip

    # Down: the links, requests and counts go; the users stay, the new password too.
    await migrate.downgrade(engine, "0015")
    tables = await table_names(engine)
    assert not {"link_tokens", "reset_requests", "page_requests"} & tables
    kept = await SqlUserStore(pooled).by_username("alice")
    assert kept is not None and kept.password_hash == "new-hash"
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0017: what access tokens say of the sign-in, step-up, MFA clients ------------------------


async def test_0017_leaves_existing_families_without_sign_in_claims_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)  # alice's family, started by a code of login session s1
    await migrate.upgrade(engine, "0016")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET username_key = username"))
        await conn.execute(
            text(
                "INSERT INTO login_sessions (id, token_hash, user_id, created_at, last_used_at,"
                " expires_at) VALUES ('s1', :hash, 'u1', :at, :at, 4000000000)"
            ),
            {"hash": "a" * 64, "at": NOW - 100},
        )

    await migrate.upgrade(engine)

    # The family from before: no amr, no auth_time (its access tokens carry neither), and it
    # still rotates, saying so again.
    store = SqlFamilyStore(pooled)
    rotated = await rotate(store, CHILD, client_id="app", now=NOW, refresh_ttl=3600, grace=0)
    assert (rotated.family.amr, rotated.family.auth_time) == (None, None)
    # The login session from before: auth_time its created_at, the password alone.
    session = await SqlLoginSessionStore(pooled).touch("a" * 64, NOW, 3600)
    assert session is not None and (session.auth_time, session.amr) == (NOW - 100, ("pwd",))
    client = await SqlClientStore(pooled).get("app")
    assert client is not None and client.require_mfa is False
    assert await schema_diff(engine) == []

    await migrate.downgrade(engine, "0016")
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT id FROM login_sessions"))).all()
        families = (await conn.execute(text("SELECT count(*) FROM refresh_families"))).scalar()
    assert [tuple(row) for row in kept] == [("s1",)] and families == 1


# --- 0018: passkeys, beside users written before it ------------------------------------------


async def test_0018_adds_passkeys_for_existing_users_and_takes_them_away_again(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0008")
    await seed_users(engine, "alice")
    await migrate.upgrade(engine, "0016")

    await migrate.upgrade(engine)

    alice = await SqlUserStore(pooled).by_username("alice")
    assert alice is not None
    store = SqlPasskeyStore(pooled)
    passkey = StoredPasskey("p1", alice.id, "Y3JlZA", b"cose", 0, ("internal",), "Laptop", NOW)
    assert await store.add(passkey)
    assert not await store.add(passkey)  # one credential, one row
    assert await SqlSecondFactorStore(pooled).kinds(alice.id) == [PASSKEY]
    assert await store.use("p1", 1, NOW) and not await store.use("p1", 1, NOW)
    held = Challenge(SIGN_IN, None, "b" * 64, NOW + 300)
    await store.hold_challenge("c" * 64, held, NOW)
    assert await store.spend_challenge("c" * 64, SIGN_IN, "b" * 64, NOW) == held
    assert await store.spend_challenge("c" * 64, SIGN_IN, "b" * 64, NOW) is None
    assert await schema_diff(engine) == []

    # Down: the passkeys and challenges go; the users stay.
    await migrate.downgrade(engine, "0016")
    assert not {"passkeys", "webauthn_challenges"} & await table_names(engine)
    assert (await SqlUserStore(pooled).by_username("alice")) is not None
    await migrate.upgrade(engine)
    assert await SqlSecondFactorStore(pooled).kinds(alice.id) == []


# --- 0019: resource servers, and the resources an authorization named -----------------------


async def test_0019_keeps_old_sessions_on_the_default_audience_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0018")

    await migrate.upgrade(engine)

    families = SqlFamilyStore(pooled)
    # A session from before names no resource: its tokens keep the default audience.
    found = await families.find(parse_refresh_token(CHILD))
    assert found is not None and found.family.resources == ()
    code = await SqlCodeStore(pooled).find("c" * 64)
    assert code is not None and code.code.resources == ()
    resources = SqlResourceStore(pooled)
    api = Resource("https://api.example/", ("read",), 300, NOW)
    assert await resources.create(api, AuditEvent(NOW, "cli", "resource.created", api.resource))
    assert await resources.get(api.resource) == api
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE refresh_families SET resources = :r"), {"r": api.resource})
    rotated = await rotate(
        families, CHILD, client_id="app", now=NOW, refresh_ttl=3600, grace=0, resource=api.resource
    )
    assert rotated.family.resources == (api.resource,)

    # Down: the registry and the columns go; the sessions stay.
    await migrate.downgrade(engine, "0018")
    assert "resources" not in await table_names(engine)
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT count(*) FROM refresh_families"))).scalar()
    assert kept == 1
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0021: registered clients (RFC 7591) and initial access tokens ---------------------------


async def test_0021_keeps_operators_clients_first_party_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0019")

    await migrate.upgrade(engine)

    clients = SqlClientStore(pooled)
    app = await clients.get("app")
    # An operator's client from before: not registered, first-party, no management token.
    assert app is not None and app.registration is None and not app.consent
    assert app.registration_token_hash is None and app.client_metadata == ()
    store = SqlRegistrationStore(pooled)
    token = InitialAccessToken("i" * 64, NOW, NOW + 60, 1)
    await store.create_initial_token(
        token, AuditEvent(NOW, "cli", "registration_token.created", "i")
    )
    made = Client(
        "dcr_1", None, ("authorization_code",), ("openid",), redirect_uris=("https://a.test/cb",),
        registration="token", registration_token_hash="r" * 64, consent=True,
        client_metadata=(("client_uri", "https://a.test/"),),
    )  # fmt: skip
    event = AuditEvent(NOW, "dcr_1", "client.registered", "dcr_1")
    assert await store.register(made, "i" * 64, NOW, event)
    assert not await store.register(replace(made, client_id="dcr_2"), "i" * 64, NOW, event)
    assert await clients.get("dcr_1") == replace(made, created_at=NOW)

    # Down: the tokens' table and the columns go; the clients stay, as plain ones.
    await migrate.downgrade(engine, "0019")
    assert "initial_access_tokens" not in await table_names(engine)
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT count(*) FROM clients"))).scalar()
    assert kept == 2
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0022: DPoP proofs seen, clients that require DPoP, families bound to a key ---------------


async def test_0022_leaves_old_clients_and_sessions_unbound_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0021")

    await migrate.upgrade(engine, "0022")

    # Clients from before require no proof; sessions from before rotate without one. (Read
    # in SQL: the client store reads the columns of later revisions too.)
    async with engine.connect() as conn:
        bound = await conn.execute(
            text("SELECT dpop_bound_access_tokens FROM clients WHERE client_id = 'app'")
        )
    assert bound.scalar_one() in (False, 0)
    await migrate.upgrade(engine)  # today's store writes columns of later revisions (0030)
    families = SqlFamilyStore(pooled)
    found = await families.find(parse_refresh_token(CHILD))
    assert found is not None and found.family.dpop_jkt is None
    rotated = await rotate(families, CHILD, client_id="app", now=NOW, refresh_ttl=3600, grace=0)
    assert rotated.family.dpop_jkt is None
    assert await SqlProofStore(pooled).first_use("k", NOW + 60, NOW)

    await migrate.downgrade(engine, "0021")
    assert "dpop_proofs" not in await table_names(engine)
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0023: remembered consent grants --------------------------------------------------------


async def test_0023_remembers_grants_widening_them_and_revoking_ends_the_family(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0022")

    await migrate.upgrade(engine, "0023")

    store = SqlConsentStore(pooled)
    assert await store.held("u1", "app") is None  # nobody allowed anything before
    allowed = AuditEvent(NOW, "u1", "consent.granted", "app")
    await store.allow("u1", "app", ["profile"], [], NOW, allowed)
    await store.allow("u1", "app", ["openid", "profile"], ["https://api.test/"], NOW + 1, allowed)
    held = await store.held("u1", "app")
    assert held == Grant(
        "app", frozenset({"openid", "profile"}), frozenset({"https://api.test/"}), NOW + 1
    )
    assert await store.grants("u1") == [held]
    revoked = AuditEvent(NOW + 2, "u1", "consent.revoked", "app")
    assert await store.revoke("u1", "app", NOW + 2, revoked)
    assert not await store.revoke("u1", "app", NOW + 2, revoked)
    found = await SqlFamilyStore(pooled).find(parse_refresh_token(CHILD))
    assert found is not None and found.family.revoked_at == NOW + 2
    await store.allow("u1", "app", [], [], NOW + 3, allowed)
    assert await store.held("u1", "app") == Grant("app", frozenset(), frozenset(), NOW + 3)

    # Down: the grants go (every third-party client asks again); users and clients stay.
    await migrate.downgrade(engine, "0022")
    assert "consent_grants" not in await table_names(engine)
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT client_id FROM clients"))).scalars().all()
    assert kept == ["app"]
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0024: the resources a client may name --------------------------------------------------


async def test_0024_lets_old_clients_name_any_resource_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0023")

    await migrate.upgrade(engine, "0024")

    # In SQL: the client store reads the columns of later revisions too.
    async with engine.begin() as conn:
        old = await conn.scalar(text("SELECT resources FROM clients WHERE client_id = 'app'"))
        assert old == ""  # any registered resource, as before
        await conn.execute(text("UPDATE clients SET resources = 'https://api.test/ urn:x:y'"))

    # Down: the column goes; the client stays, free to name any resource again.
    await migrate.downgrade(engine, "0023")
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT client_id FROM clients"))).scalars().all()
    assert kept == ["app"]
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0028: abandoned sign-ups --------------------------------------------------------------


async def test_0028_keeps_every_account_and_marks_none_abandoned(
    engine: AsyncEngine, pooled: AsyncEngine, settings: Settings
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0027")
    async with engine.begin() as conn:  # a `verified` sign-up waiting since before 0028
        await conn.execute(text("UPDATE users SET disabled = true WHERE id = 'u1'"))

    await migrate.upgrade(engine, "0028")
    await migrate.upgrade(engine)  # today's purge reads the tables of later revisions (0030)

    # Made before the column, it is not known to be a sign-up: the purge leaves it.
    purged = await purge(engine, settings, NOW + 365 * 86_400)
    assert purged is not None and purged.abandoned_sign_ups == 0
    assert await SqlUserStore(pooled).by_id("u1") is not None

    await migrate.downgrade(engine, "0027")
    assert "signup_expires_at" not in await column_names(engine, "users")
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0027: client ID metadata documents' clients, kept in clients -----------------------------


async def test_0027_leaves_old_clients_without_a_document_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0026")

    await migrate.upgrade(engine, "0027")

    clients = SqlClientStore(pooled)
    app = await clients.get("app")
    assert app is not None and app.document_expires_at is None
    url = "https://app.test/client.json"
    document = Client(
        url, None, ("authorization_code",), ("openid",), redirect_uris=("https://a.test/cb",),
        registration="document", consent=True, document_expires_at=NOW + 60,
    )  # fmt: skip
    assert await clients.save_document(document, NOW) == replace(document, created_at=NOW)
    # An operator's client of the same id is never overwritten by a document.
    assert await clients.save_document(replace(document, client_id="app"), NOW) == app

    # Down: the column goes; the document's client stays, as a plain public one.
    await migrate.downgrade(engine, "0026")
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT count(*) FROM clients"))).scalar()
    assert kept == 2
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0029: refresh families without foreign keys to users and clients -----------------------


async def family_keys(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        keys = await conn.run_sync(lambda sync: inspect(sync).get_foreign_keys("refresh_families"))
    return {key["referred_table"] for key in keys}


async def test_0029_drops_the_owners_keys_keeps_the_username_scrub_and_goes_back(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)  # alice (u1), her family with client app
    await migrate.upgrade(engine, "0028")
    async with engine.begin() as conn:  # her user.created event, as written before 0029
        await conn.execute(
            text(
                "INSERT INTO audit_events (at, actor, action, target, detail)"
                " VALUES (:at, 'root', 'user.created', 'u1', :detail)"
            ),
            {"at": NOW - 100, "detail": '{"username": "alice"}'},
        )
    assert await family_keys(engine) == {"users", "clients"}

    await migrate.upgrade(engine, "0029")

    assert await family_keys(engine) == set()
    # The account's deletion still scrubs the username from the event written before 0029,
    # found now through user_id.
    assert await SqlUserStore(pooled).delete("u1", NOW, [])
    async with engine.begin() as conn:
        detail = (await conn.execute(text("SELECT detail FROM audit_events"))).scalar_one()
        # Only the purge deletes users, and their families with them; a family left without
        # its user by a hand-made delete is one the downgrade cannot keep.
        await conn.execute(
            text(
                "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at,"
                " expires_at) VALUES (:id, 'gone', 'app', 'profile', 0, 1)"
            ),
            {"id": "00000000-0000-4000-8000-000000000001"},
        )
    assert "alice" not in detail

    await migrate.downgrade(engine, "0028")
    assert await family_keys(engine) == {"users", "clients"}
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT user_id FROM refresh_families"))).scalars()
        assert list(kept) == ["u1"]
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []


# --- 0030: the live refresh token in its family's row --------------------------------------


async def tokens_apart(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM refresh_tokens"))).scalar_one())


async def test_0030_old_tokens_rotate_into_the_family_and_their_reuse_still_revokes(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    """A token issued before (no family in it; its family's new columns NULL) rotates for
    one idle lifetime: its successor names the family and lives in the family's row."""
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)  # PARENT spent, its child CHILD live, in refresh_tokens
    await migrate.upgrade(engine, "0028")

    await migrate.upgrade(engine, "0030")

    store = SqlFamilyStore(pooled)
    assert parse_refresh_token(CHILD).family_id is None
    rotated = await rotate(store, CHILD, client_id="app", now=NOW, refresh_ttl=3600, grace=0)
    assert parse_refresh_token(rotated.refresh_token).family_id == FAMILY
    again = await rotate(
        store, rotated.refresh_token, client_id="app", now=NOW + 1, refresh_ttl=3600, grace=0
    )
    assert again.family.id == FAMILY
    assert await tokens_apart(engine) == 2  # nothing more written there
    # A replay of the old token spent in refresh_tokens is reuse: the family is revoked.
    with pytest.raises(InvalidGrant, match="reuse"):
        await rotate(store, CHILD, client_id="app", now=NOW + 2, refresh_ttl=3600, grace=0)
    family = await store.get(FAMILY)
    assert family is not None and family.revoked_at == NOW + 2


async def test_0030_grace_retry_of_an_old_token_and_down_and_up_keep_the_session(
    engine: AsyncEngine, pooled: AsyncEngine
) -> None:
    await migrate.upgrade(engine, "0007")
    await seed_before_0008(engine)
    await migrate.upgrade(engine, "0030")
    store = SqlFamilyStore(pooled)
    first = await rotate(store, CHILD, client_id="app", now=NOW, refresh_ttl=3600, grace=30)
    # The old token's lost response: retried within grace, it gets a new child of it.
    retried = await rotate(store, CHILD, client_id="app", now=NOW + 5, refresh_ttl=3600, grace=30)
    assert retried.family.id == FAMILY and retried.refresh_token != first.refresh_token
    with pytest.raises(InvalidGrant, match="reuse"):  # the child it replaced is spent now
        await rotate(
            store, first.refresh_token, client_id="app", now=NOW + 60, refresh_ttl=3600, grace=0
        )
    async with engine.begin() as conn:  # a new session, for the way down
        await conn.execute(text("UPDATE refresh_families SET revoked_at = NULL"))
    live = await rotate(
        store, retried.refresh_token, client_id="app", now=NOW + 61, refresh_ttl=3600, grace=0
    )

    # Down: the family's live and spent tokens go back to refresh_tokens, as 0028's code
    # reads them (the hash of the whole token): the session goes on, reuse is still told.
    await migrate.downgrade(engine, "0028")
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT token_hash, spent_at FROM refresh_tokens"))
        back = {bytes(h): s for h, s in rows}
    assert back[stored_hash(hash_token(live.refresh_token))] is None
    assert back[stored_hash(hash_token(retried.refresh_token))] == NOW + 61
    assert back[stored_hash(hash_token(first.refresh_token))] == NOW + 5
    assert len(back) == 5  # PARENT, CHILD, and the three since

    # Up again: the token put back rotates, into its family's row.
    await migrate.upgrade(engine)
    assert await schema_diff(engine) == []
    later = await rotate(
        store, live.refresh_token, client_id="app", now=NOW + 62, refresh_ttl=3600, grace=0
    )
    assert later.family.id == FAMILY
    with pytest.raises(InvalidGrant, match="reuse"):
        await rotate(
            store, live.refresh_token, client_id="app", now=NOW + 63, refresh_ttl=3600, grace=0
        )
