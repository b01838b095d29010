"""The lifecycle commands, run for real as an operator would: each goes through the admin API's
use case (so the same rules and audit, actor `cli`), prints a table or `--json` lines, and exits
with a status scripts can rely on (0 done, 1 refused, 3 not found, 4 taken)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette

from authserver.accounts.second_factors import new_totp_secret, seal_totp
from authserver.app import create_app
from authserver.db.second_factors import SqlSecondFactorStore
from authserver.keys.sealing import KeySealer
from tests._postgres import scratch_database
from tests.conftest import ISSUER, make_settings
from tests.test_cli import (
    NO_POSTGRES,
    Cli,
    assert_one_line_error,
    audit_rows,
    claims,
    make_cli,
    password_login,
    sqlite_url_in,
    upgrade,
)

STRONG = "correct horse battery staple"


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None) -> Iterator[Cli]:
    """The CLI on a migrated database of its own (SQLite, then Postgres)."""
    if request.param == "sqlite":
        url = sqlite_url_in(tmp_path)
        upgrade(url)
        yield make_cli(tmp_path, url)
        return
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    with scratch_database(postgres_url, "cli") as url:
        upgrade(url)
        yield make_cli(tmp_path, url)


@pytest.fixture
async def http(cli: Cli) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on the CLI's database and keys, to check what the CLI changed."""
    app: Starlette = create_app(make_settings(cli.database_url, cli.keys_dir))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            yield client


async def run(cli: Cli, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command in a thread: the app's event loop (and its SQLite transactions) go on."""
    return await anyio.to_thread.run_sync(partial(cli, *args, stdin=stdin))


async def audit_of(cli: Cli) -> list[tuple[str, str, str, dict[str, object]]]:
    return await anyio.to_thread.run_sync(audit_rows, cli)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(result).splitlines()]


def table(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    return [line.split() for line in ok(result).splitlines()]


async def service_token(http: httpx.AsyncClient, client_id: str, secret: str) -> int:
    response = await http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return response.status_code


async def test_clients_list_show_update_rotate_and_delete(
    cli: Cli, http: httpx.AsyncClient
) -> None:
    old = ok(await run(cli, "clients", "create", "billing", "--scope", "invoices.read")).strip()
    ok(await run(cli, "clients", "create", "my-spa", "--public", "--grant", "password"))

    rows = table(await run(cli, "clients", "list"))
    assert rows[0][:3] == ["client_id", "public", "grant_types"]
    # The console's own client is registered by the running server (docs/console.md).
    assert [row[0] for row in rows[1:]] == ["authserver-console", "billing", "my-spa"]
    listed = json_lines(await run(cli, "clients", "list", "--json", "--limit", "1"))
    assert [c["client_id"] for c in listed] == ["authserver-console"]
    shown = json_lines(await run(cli, "clients", "show", "billing", "--json"))[0]
    assert shown["scopes"] == ["invoices.read"] and shown["disabled"] is False
    assert old not in json.dumps(shown)

    updated = json_lines(
        await run(
            cli,
            "clients",
            "update",
            "billing",
            "--scope",
            "invoices.read",
            "--scope",
            "x",
            "--json",
        )
    )[0]
    assert updated["scopes"] == ["invoices.read", "x"]
    assert_one_line_error(
        await run(cli, "clients", "update", "billing", "--grant", "implicit"), "implicit"
    )
    assert_one_line_error(await run(cli, "clients", "update", "billing"), "nothing to change")

    rotated = await run(cli, "clients", "rotate-secret", "billing", "--old-secret-ttl", "600")
    new = ok(rotated).strip()  # the new secret alone on stdout
    assert len(new) >= 43 and new != old and "600" not in new
    assert await service_token(http, "billing", new) == 200
    assert await service_token(http, "billing", old) == 200  # within its window
    newer = ok(await run(cli, "clients", "rotate-secret", "billing", "--old-secret-ttl", "0"))
    # The newest secret works at once, though this server remembers the client (5 s): a
    # mismatch re-reads it. (That the old one stops, with a clock: test_admin_lifecycle.py.)
    assert await service_token(http, "billing", newer.strip()) == 200
    assert_one_line_error(await run(cli, "clients", "rotate-secret", "my-spa"), "public")

    disabled = json_lines(await run(cli, "clients", "update", "billing", "--disable", "--json"))[0]
    assert disabled["disabled"] is True
    ok(await run(cli, "clients", "update", "billing", "--enable"))

    assert ok(await run(cli, "clients", "delete", "billing")) == ""
    missing = await run(cli, "clients", "show", "billing")
    assert missing.returncode == 3
    assert_one_line_error(missing, "client_id")
    taken = await run(cli, "clients", "create", "billing")
    assert taken.returncode == 4
    assert_one_line_error(taken, "taken")

    actions = [(actor, action, target) for actor, action, target, _ in await audit_of(cli)]
    assert [a for a in actions if a[1].startswith("client.") and a[2] == "billing"] == [
        ("cli", "client.created", "billing"),
        ("cli", "client.updated", "billing"),
        ("cli", "client.secret_rotated", "billing"),
        ("cli", "client.secret_rotated", "billing"),
        ("cli", "client.updated", "billing"),
        ("cli", "client.updated", "billing"),
        ("cli", "client.deleted", "billing"),
    ]


async def test_users_list_show_update_password_sessions_and_delete(
    cli: Cli, http: httpx.AsyncClient
) -> None:
    ok(
        await run(
            cli, "clients", "create", "spa", "--public", "--grant", "password", "--scope", "profile"
        )
    )
    create = ("users", "create", "alice", "--scope", "profile", "--password-stdin")
    sub = ok(await run(cli, *create, stdin=STRONG + "\n")).strip()
    weak = await run(cli, "users", "create", "bob", "--password-stdin", stdin="password1234\n")
    assert_one_line_error(weak, "commonly used")
    assert "password1234" not in weak.stderr

    login = await password_login(http, "alice", STRONG, scope="profile")
    assert login.status_code == 200, login.text
    sid = str(claims(login.json()["access_token"])["sid"])

    rows = table(await run(cli, "users", "list", "--username", "al"))
    assert rows[0][:2] == ["sub", "username"] and rows[1][:2] == [sub, "alice"]
    by_name = json_lines(await run(cli, "users", "show", "alice", "--json"))[0]
    assert json_lines(await run(cli, "users", "show", sub, "--json"))[0] == by_name
    assert by_name["last_login_at"] is not None

    sessions = json_lines(await run(cli, "users", "sessions", "alice", "--json"))
    assert [(s["sid"], s["client_id"]) for s in sessions] == [(sid, "spa")]
    updated = json_lines(await run(cli, "users", "update", "alice", "--admin", "--json"))[0]
    assert updated["admin"] is True and updated["scopes"] == ["profile"]

    short = await run(cli, "users", "set-password", "alice", "--password-stdin", stdin="tiny\n")
    assert_one_line_error(short, "shorter than 12")
    new = "a different long passphrase"
    ok(await run(cli, "users", "set-password", "alice", "--password-stdin", stdin=new + "\n"))
    assert (
        json_lines(await run(cli, "users", "sessions", "alice", "--json")) == []
    )  # revoked with it
    assert (await password_login(http, "alice", new)).status_code == 200
    (session,) = json_lines(await run(cli, "users", "sessions", "alice", "--json"))
    assert ok(await run(cli, "sessions", "revoke", session["sid"])) == ""
    assert json_lines(await run(cli, "users", "sessions", "alice", "--json")) == []
    assert (await run(cli, "sessions", "revoke", "no-such-sid")).returncode == 3

    assert ok(await run(cli, "users", "delete", "alice")) == ""
    assert (await run(cli, "users", "show", sub)).returncode == 3
    again = ok(
        await run(cli, "users", "create", "alice", "--password-stdin", stdin=STRONG + "\n")
    ).strip()
    assert again != sub

    events = [
        (a, action, t) for a, action, t, _ in await audit_of(cli) if action.startswith("user.")
    ]
    assert [e for e in events if e[2] == sub] == [
        ("cli", "user.created", sub),
        ("cli", "user.updated", sub),
        ("cli", "user.password_set", sub),
        ("cli", "user.deleted", sub),
    ]


def test_audit_prints_a_table_or_json_lines(cli: Cli) -> None:
    ok(cli("clients", "create", "billing"))
    ok(cli("clients", "update", "billing", "--disable"))

    rows = table(cli("audit", "--limit", "1"))
    assert rows[0] == ["id", "at", "actor", "type", "target", "user", "family", "detail"]
    assert rows[1][3:6] == ["cli", "client.updated", "billing"]
    events = json_lines(cli("audit", "--type", "client.created", "--json"))
    assert [(e["actor"], e["target"]) for e in events] == [("cli", "billing")]
    assert_one_line_error(cli("audit", "--limit", "0"), "--limit")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("clients", "rotate-secret"), "(default: 3600)"),
        (("clients", "update"), "{body,cookie}"),
        (("users", "list"), "(default: 100)"),
        (("audit",), "(default: 100)"),
    ],
)
def test_help_shows_defaults_valid_values_and_exit_statuses(
    tmp_path: Path, command: tuple[str, ...], shown: str
) -> None:
    result = make_cli(tmp_path, sqlite_url_in(tmp_path))(*command, "--help")
    assert result.returncode == 0
    assert shown in result.stdout
    words = " ".join(result.stdout.split())
    assert "3 no such user, client, session, resource or live registration token" in words


async def test_clients_create_and_update_take_the_uris_the_name_and_the_origins(
    cli: Cli, http: httpx.AsyncClient
) -> None:
    ok(
        await run(
            cli, "clients", "create", "shop", "--public", "--grant", "authorization_code",
            "--redirect-uri", "https://shop.example/cb", "--client-name", "The Shop",
            "--allowed-origin", "https://shop.example", "--allowed-origin", "http://localhost:5173",
        )
    )  # fmt: skip
    shown = table(await run(cli, "clients", "show", "shop"))
    assert ["client_name", "The", "Shop"] in shown
    assert ["allowed_origins", "https://shop.example", "http://localhost:5173"] in shown
    assert ["redirect_uris", "https://shop.example/cb"] in shown

    updated = json_lines(
        await run(
            cli, "clients", "update", "shop", "--redirect-uri", "https://shop.example/new",
            "--post-logout-redirect-uri", "https://shop.example/bye",
            "--client-name", "Shop", "--allowed-origin", "https://www.shop.example", "--json",
            "--dpop-bound-access-tokens",
        )
    )[0]  # fmt: skip
    assert updated["redirect_uris"] == ["https://shop.example/new"]
    assert updated["post_logout_redirect_uris"] == ["https://shop.example/bye"]
    assert updated["client_name"] == "Shop"
    assert updated["allowed_origins"] == ["https://www.shop.example"]  # replaced, not added
    assert updated["dpop_bound_access_tokens"] is True  # RFC 9449 §5.2
    # A running server answers the new origin (across instances at once:
    # tests/http/test_client_origins.py).
    preflight = {"Origin": "https://www.shop.example", "Access-Control-Request-Method": "POST"}
    assert (await http.options("/token", headers=preflight)).status_code == 200

    refused = await run(cli, "clients", "update", "shop", "--allowed-origin", "https://x.example/a")
    assert refused.returncode == 1
    assert_one_line_error(refused, "allowed_origins")
    removed = json_lines(await run(cli, "clients", "update", "shop", "--client-name", "", "--json"))
    assert removed[0]["client_name"] is None


async def test_users_create_and_update_take_the_profile_and_roles_and_show_prints_them(
    cli: Cli,
) -> None:
    create = (
        "users", "create", "alice", "--password-stdin", "--email", "Alice@Example.org",
        "--name", "Alice Liddell", "--given-name", "Alice", "--family-name", "Liddell",
        "--locale", "en-GB", "--role", "editor", "--role", "billing:read",
    )  # fmt: skip
    ok(await run(cli, *create, stdin=STRONG + "\n"))
    shown = json_lines(await run(cli, "users", "show", "alice", "--json"))[0]
    assert {k: shown[k] for k in ("email", "email_verified", "name", "locale", "roles")} == {
        "email": "Alice@Example.org",
        "email_verified": False,
        "name": "Alice Liddell",
        "locale": "en-GB",
        "roles": ["editor", "billing:read"],
    }
    assert shown["given_name"] == "Alice" and shown["family_name"] == "Liddell"
    printed = ok(await run(cli, "users", "show", "alice"))
    assert "Alice@Example.org" in printed and "editor billing:read" in printed

    changed = await run(
        cli, "users", "update", "alice", "--email-verified", "--role", "viewer", "--name", "",
        "--json",
    )  # fmt: skip
    updated = json_lines(changed)[0]
    assert updated["email_verified"] is True and updated["roles"] == ["viewer"]
    assert updated["name"] is None  # an empty value clears the field
    assert (
        json_lines(await run(cli, "users", "update", "alice", "--no-roles", "--json"))[0]["roles"]
        == []
    )

    bad = await run(cli, "users", "update", "alice", "--role", "has space")
    assert_one_line_error(bad, "role")
    create_bob = ("users", "create", "bob", "--password-stdin", "--email", "ALICE@example.org")
    taken = await run(cli, *create_bob, stdin=STRONG + "\n")
    assert taken.returncode == 4, taken.stderr  # taken, as a username is
    assert_one_line_error(taken, "email")


async def test_users_reset_factors_removes_them_and_ends_every_session(
    cli: Cli, http: httpx.AsyncClient
) -> None:
    ok(await run(cli, "clients", "create", "spa", "--public", "--grant", "password"))
    create = ("users", "create", "alice", "--password-stdin")
    sub = ok(await run(cli, *create, stdin=STRONG + "\n")).strip()
    assert (await password_login(http, "alice", STRONG)).status_code == 200
    # An authenticator app, as the account page stores one (its secret does not matter here).
    engine = create_async_engine(cli.database_url, poolclass=NullPool)
    try:
        sealed = seal_totp(KeySealer(b"k" * 32), "f1", new_totp_secret())
        assert await SqlSecondFactorStore(engine).add_totp("f1", sub, sealed, 0, 0)
    finally:
        await engine.dispose()
    assert json_lines(await run(cli, "users", "show", "alice", "--json"))[0]["factors"] == ["totp"]

    reset = await run(cli, "users", "reset-factors", "alice")
    assert reset.returncode == 0 and "removed 1 second factor(s) of alice" in reset.stderr
    assert json_lines(await run(cli, "users", "show", "alice", "--json"))[0]["factors"] == []
    assert json_lines(await run(cli, "users", "sessions", "alice", "--json")) == []
    assert (await run(cli, "users", "reset-factors", "nobody")).returncode == 3
    actions = [(a, action) for a, action, t, _ in await audit_of(cli) if t == sub]
    assert ("cli", "factor.removed") in actions and ("cli", "user.factors_reset") in actions


async def test_clients_create_and_update_take_require_mfa(cli: Cli) -> None:
    ok(
        await run(
            cli, "clients", "create", "bank", "--public", "--grant", "authorization_code",
            "--redirect-uri", "https://bank.example/cb", "--require-mfa",
        )
    )  # fmt: skip
    assert ["require_mfa", "yes"] in table(await run(cli, "clients", "show", "bank"))
    off = json_lines(await run(cli, "clients", "update", "bank", "--no-require-mfa", "--json"))
    assert off[0]["require_mfa"] is False
    # The password grant has no second step: refused beside require_mfa.
    refused = await run(cli, "clients", "update", "bank", "--require-mfa", "--grant", "password")
    assert refused.returncode == 1
    assert_one_line_error(refused, "require_mfa")
