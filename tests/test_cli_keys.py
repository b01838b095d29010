"""`authserver keys rotate` and `keys revoke`, run for real in a subprocess on SQLite (the
database work is the same store code the admin API runs, tested on both databases there)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import Cli, assert_one_line_error, key_rows, make_cli, sqlite_url_in


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path, sqlite_url_in(tmp_path))


def states(rows: list[list[str]]) -> dict[str, str]:
    return {row[0]: row[2] for row in rows}


def audit(tmp_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(tmp_path / "authserver.db") as db:
        return list(db.execute("SELECT actor, action, target FROM audit_events ORDER BY id"))


def test_rotate_refuses_a_young_next_key_unless_forced(cli: Cli, tmp_path: Path) -> None:
    first = states(key_rows(cli("keys", "list")))
    (active,) = [kid for kid, state in first.items() if state == "active"]
    (nxt,) = [kid for kid, state in first.items() if state == "next"]

    assert_one_line_error(cli("keys", "rotate"), "not ready", "--force")
    assert states(key_rows(cli("keys", "list"))) == first

    rotated = cli("keys", "rotate", "--force", "--alg", "EdDSA")
    rows = key_rows(rotated)
    after = states(rows)
    assert after[active] == "retired" and after[nxt] == "active"
    (new_next,) = [row for row in rows if row[2] == "next"]
    assert new_next[1] == "EdDSA"
    assert ("cli", "key.activated", nxt) in audit(tmp_path)


def test_revoke_withdraws_a_key_and_an_unknown_kid_is_one_line(cli: Cli, tmp_path: Path) -> None:
    first = states(key_rows(cli("keys", "list")))
    (active,) = [kid for kid, state in first.items() if state == "active"]

    after = states(key_rows(cli("keys", "revoke", active)))

    assert after[active] == "revoked"
    assert list(after.values()).count("active") == 1
    assert ("cli", "key.revoked", active) in audit(tmp_path)
    assert_one_line_error(cli("keys", "revoke", "no-such-kid"), "kid")
    # A kid may begin with "-" (base64url): it is the key's name, not an option.
    assert_one_line_error(cli("keys", "revoke", "-no-such-kid"), "kid")
