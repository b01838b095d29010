"""`authserver clients registration-token`, run in-process as tests/test_cli_resources.py runs
its commands: the token alone on a line of stdout, only its hash stored, and it registers a
client at POST /register in `token` mode."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from authserver.app import create_app
from authserver.cli import EXIT_NOT_FOUND
from tests.conftest import ISSUER, make_settings
from tests.test_cli_resources import audited, cli_env, rows_of, run

__all__ = ["cli_env"]  # the fixture, shared


def stored(database_url: str, token_hash: str) -> list[Any]:
    sql = "SELECT * FROM initial_access_tokens WHERE token_hash = :h"
    return rows_of(database_url, sql, h=token_hash)


def register_with(database_url: str, tmp_path: Path, token: str) -> list[int]:
    settings = make_settings(database_url, tmp_path / "keys", registration="token")
    body = {"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"}

    async def twice() -> list[int]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                headers = {"Authorization": f"Bearer {token}"}
                return [
                    (await http.post("/register", json=body, headers=headers)).status_code
                    for _ in range(2)
                ]

    return asyncio.run(twice())


def test_registration_token_prints_the_token_alone_and_stores_its_hash(
    cli_env: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "clients", "registration-token", "--expires-in", "600")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and len(lines[0]) >= 43, out  # 256 bits, base64url
    token = lines[0]
    assert "1 registration(s)" in err and token not in err
    digest = hashlib.sha256(token.encode()).hexdigest()
    (row,) = stored(database_url, digest)
    assert row.max_uses == 1 and row.uses == 0 and row.expires_at - row.created_at == 600
    assert stored(database_url, token) == []  # never in clear
    assert register_with(database_url, tmp_path, token) == [201, 401]  # single use

    status, out, _ = run(capsys, "clients", "registration-token", "--multi-use")
    (row,) = stored(database_url, hashlib.sha256(out.strip().encode()).hexdigest())
    assert status == 0 and row.max_uses is None
    assert register_with(database_url, tmp_path, out.strip()) == [201, 201]


def test_registration_token_refuses_bad_numbers_in_one_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (("--expires-in", "10"), ("--uses", "0")):
        status, out, err = run(capsys, "clients", "registration-token", *args)
        assert status == 1 and out == "" and len(err.splitlines()) == 1, err


def test_registration_tokens_lists_the_live_ones_and_revoke_ends_one_audited_as_cli(
    cli_env: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = []
    for args in (("--uses", "3"), ("--multi-use",)):
        status, out, err = run(capsys, "clients", "registration-token", *args)
        assert status == 0, err
        made.append(out.strip())
    three, anyhow = (hashlib.sha256(token.encode()).hexdigest()[:12] for token in made)

    status, out, err = run(capsys, "clients", "registration-tokens")
    assert status == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].split() == ["id", "created_at", "expires_at", "registrations"]
    (row,) = [line for line in lines if line.startswith(three)]
    assert row.endswith("0 of 3"), row
    status, out, _ = run(capsys, "clients", "registration-tokens", "--json")
    listed = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert status == 0 and listed[anyhow]["max_uses"] is None and listed[three]["uses"] == 0
    assert listed[three]["expires_at"] - listed[three]["created_at"] == 86_400

    status, out, err = run(capsys, "clients", "revoke-registration-token", three)
    assert status == 0 and out == "" and three in err, err
    assert audited(database_url, three) == [
        ("cli", "registration_token.created"),
        ("cli", "registration_token.revoked"),
    ]
    _, out, _ = run(capsys, "clients", "registration-tokens", "--json")
    ids = [json.loads(line)["id"] for line in out.splitlines()]
    assert three not in ids and anyhow in ids
    assert register_with(database_url, tmp_path, made[0]) == [401, 401]

    for dead in (three, "0" * 12, "x"):  # revoked, unknown, no such shape
        status, out, err = run(capsys, "clients", "revoke-registration-token", dead)
        assert status == EXIT_NOT_FOUND and out == "", err
        assert err == "authserver: No registration token that still works has this id.\n"
