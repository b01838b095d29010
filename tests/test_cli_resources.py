"""`authserver resources ...`, run in-process (the command's `main`, no subprocess: the
lifecycle commands' subprocess tests are the suite's slowest) on both databases: the admin
API's use cases, audited as `cli`, a table or JSON lines, the exit statuses."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from authserver.cli import EXIT_CONFLICT, EXIT_NOT_FOUND, main
from tests.conftest import ISSUER, KEK


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The command's environment on the migrated test database; a prefix of its own, so other
    tests' rows (emptied only when they start) never meet this one's."""
    for name, value in {
        "DATABASE_URL": database_url,
        "ISSUER": ISSUER,
        "KEY_ENCRYPTION_KEY": KEK,
        "KEYS_DIR": str(tmp_path / "keys"),
    }.items():
        monkeypatch.setenv(f"AUTHSERVER_{name}", value)
    return f"https://{uuid.uuid4().hex}.example"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def rows_of(database_url: str, sql: str, **params: str) -> list[Any]:
    """The rows a query finds in the test database, read on a connection of its own."""

    async def read() -> list[Any]:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def audited(database_url: str, target: str) -> list[tuple[str, str]]:
    sql = "SELECT actor, action FROM audit_events WHERE target LIKE :t ORDER BY id"
    return [(row.actor, row.action) for row in rows_of(database_url, sql, t=target + "%")]


def test_resources_create_list_show_update_delete(
    cli_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = cli_env + "/api"
    status, out, _ = run(
        capsys, "resources", "create", api, "--scope", "read", "--scope", "write",
        "--access-token-ttl", "300", "--json",
    )  # fmt: skip
    assert status == 0
    assert json.loads(out) == {
        "resource": api,
        "scopes": ["read", "write"],
        "access_token_ttl": 300,
    }

    status, out, _ = run(capsys, "resources", "create", cli_env + "/b")
    assert status == 0 and "access_token_ttl  900" in out  # the server's lifetime by default

    status, out, _ = run(capsys, "resources", "list", "--json")
    mine = [json.loads(line) for line in out.splitlines() if cli_env in line]
    assert [r["resource"] for r in mine] == [api, cli_env + "/b"]
    status, out, _ = run(capsys, "resources", "list")
    header, *rows = out.splitlines()
    assert header.split() == ["resource", "scopes", "access_token_ttl"]
    assert any(row.split() == [api, "read", "write", "300"] for row in rows), out

    status, out, _ = run(capsys, "resources", "update", api, "--scope", "read", "--json")
    assert status == 0 and json.loads(out)["scopes"] == ["read"]
    status, out, _ = run(capsys, "resources", "update", api, "--no-scopes", "--json")
    assert json.loads(out)["scopes"] == []
    status, out, _ = run(capsys, "resources", "show", api, "--json")
    assert json.loads(out) == {"resource": api, "scopes": [], "access_token_ttl": 300}

    status, _, err = run(capsys, "resources", "delete", api)
    assert status == 0 and f"deleted resource {api}" in err
    status, _, err = run(capsys, "resources", "show", api)
    assert status == EXIT_NOT_FOUND and err == "authserver: No resource has this identifier.\n"
    run(capsys, "resources", "delete", cli_env + "/b")

    assert audited(database_url, cli_env) == [
        ("cli", "resource.created"),
        ("cli", "resource.created"),
        ("cli", "resource.updated"),
        ("cli", "resource.updated"),
        ("cli", "resource.deleted"),
        ("cli", "resource.deleted"),
    ]


def test_resources_refuses_in_one_line(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "resources", "create", "/relative")
    assert status == 1
    assert err == (
        "authserver: The resource is malformed: a resource must be an absolute URI (RFC 8707 §2).\n"
    )
    status, _, err = run(capsys, "resources", "create", cli_env, "--access-token-ttl", "86400")
    assert status == 1 and "AUTHSERVER_ACCESS_TOKEN_TTL" in err and err.count("\n") == 1
    assert run(capsys, "resources", "create", cli_env)[0] == 0
    assert run(capsys, "resources", "create", cli_env)[0] == EXIT_CONFLICT
    status, _, err = run(capsys, "resources", "update", cli_env)
    assert status == 1 and "nothing to change" in err
    assert run(capsys, "resources", "delete", cli_env)[0] == 0
    assert run(capsys, "resources", "delete", cli_env)[0] == EXIT_NOT_FOUND


def test_clients_create_and_update_take_the_resources_a_client_may_name(
    cli_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--resource` (repeatable; replaces the list on update), `--no-resources` clears it
    (docs/resources.md, "Which clients may ask for a resource"); an unregistered one refused."""
    api, files = cli_env + "/api", cli_env + "/files"
    assert run(capsys, "resources", "create", api)[0] == 0
    assert run(capsys, "resources", "create", files)[0] == 0
    client_id = "c-" + uuid.uuid4().hex[:12]
    status, out, err = run(
        capsys, "clients", "create", client_id, "--resource", api, "--resource", files
    )
    assert status == 0, err
    status, out, _ = run(capsys, "clients", "show", client_id, "--json")
    assert json.loads(out)["resources"] == [api, files]
    status, out, _ = run(capsys, "clients", "update", client_id, "--resource", files, "--json")
    assert status == 0 and json.loads(out)["resources"] == [files]
    status, out, _ = run(capsys, "clients", "update", client_id, "--no-resources", "--json")
    assert status == 0 and json.loads(out)["resources"] == []
    both = run(capsys, "clients", "update", client_id, "--resource", api, "--no-resources")
    assert both[0] == 1 and "not both" in both[2]

    status, _, err = run(capsys, "clients", "update", client_id, "--resource", cli_env + "/none")
    assert status == 1 and err == "authserver: Each of resources must be a registered resource.\n"
    status, _, err = run(capsys, "clients", "create", client_id + "x", "--resource", "/relative")
    assert status == 1 and "resources" in err and err.count("\n") == 1

    sql = "SELECT detail FROM audit_events WHERE target = :t ORDER BY id"
    created, *updated = [json.loads(row.detail) for row in rows_of(database_url, sql, t=client_id)]
    assert created["resources"] == [api, files]
    assert updated == [{"resources": [files]}, {"resources": []}]
