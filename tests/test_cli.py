"""The `authserver` command, as an operator runs it.

Every command reads the same settings as the server and answers bad input with one line per
problem on stderr and a non-zero exit, never a traceback. The commands run in this process
(`authserver.cli.main` with the command's environment, directory and standard streams): a
subprocess per command cost a second of imports each, minutes of the suite. `serve`, and the
installed console script's exit statuses (test_the_installed_script_exits_with_mains_status),
still run as processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.cli import main
from authserver.db import migrate
from tests._postgres import scratch_database
from tests._smtp import SmtpServer
from tests.conftest import ISSUER, KEK, make_settings

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))
NO_POSTGRES = "no Postgres could be found or started (set AUTHSERVER_TEST_DATABASE_URL)"


@dataclass
class Cli:
    """Runs a command with a fixed environment, in a directory of its own: `main` in this
    process, or the installed console script (see __call__)."""

    database_url: str
    keys_dir: Path
    cwd: Path

    def env(self, overrides: Mapping[str, str | None]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
        env.update(
            {
                "AUTHSERVER_DATABASE_URL": self.database_url,
                "AUTHSERVER_KEYS_DIR": str(self.keys_dir),
                "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
                "AUTHSERVER_ARGON2_TIME_COST": "1",
                "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
                "AUTHSERVER_ARGON2_PARALLELISM": "1",
            }
        )
        for name, value in overrides.items():  # None unsets the variable
            env.pop(f"AUTHSERVER_{name}", None)
            if value is not None:
                env[f"AUTHSERVER_{name}"] = value
        return env

    def __call__(
        self,
        *args: str,
        stdin: str = "",
        env: Mapping[str, str | None] | None = None,
        process: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """`env` adds to or (with None) removes from the settings, named without the prefix.
        In this process, but `serve` (it would run a server here) and with `process`: the
        installed console script in a subprocess."""
        if process or args[:1] == ("serve",):
            return subprocess.run(
                [AUTHSERVER, *args],
                input=stdin,
                env=self.env(env or {}),
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=60,
            )
        command = partial(self._main, args, stdin, self.env(env or {}))
        if _in_an_event_loop():  # main() runs one of its own; waits as subprocess.run did
            with ThreadPoolExecutor(1) as thread:
                return thread.submit(command).result()
        return command()

    def _main(
        self, args: tuple[str, ...], stdin: str, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        with _one_command_at_a_time, _as_a_process(env, self.cwd, stdin) as (stdout, stderr):
            try:
                status = main(list(args))
            except SystemExit as exc:  # argparse: --help, a usage error
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                status = 1 if isinstance(exc.code, str) else exc.code or 0
        return subprocess.CompletedProcess(
            [AUTHSERVER, *args], status, stdout.getvalue(), stderr.getvalue()
        )

    def popen(
        self, *args: str, log: Path, env: Mapping[str, str | None] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [AUTHSERVER, *args],
                env=self.env(env or {}),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


# The environment, the working directory and the standard streams are the process's.
_one_command_at_a_time = threading.Lock()


def _in_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def _as_a_process(
    env: Mapping[str, str], cwd: Path, stdin: str
) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What a subprocess would have had: the command's AUTHSERVER_ variables only, `cwd`, stdin
    as given, stdout and stderr kept, help wrapped at 80 columns (stdout is no terminal) and
    warnings logged to stderr (Python's last-resort handler, which pytest's own would hide)."""
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    last_resort = logging.StreamHandler(err)
    last_resort.setLevel(logging.WARNING)
    # In a thread (the lifecycle tests), the app on the main thread's loop goes on: not its logs.
    caller, main_thread = threading.get_ident(), threading.main_thread().ident
    if caller != main_thread:
        last_resort.addFilter(lambda record: record.thread != main_thread)
    try:
        os.environ.clear()
        os.environ.update({"COLUMNS": "80", **env})
        os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
        logging.getLogger().addHandler(last_resort)
        yield out, err
    finally:
        logging.getLogger().removeHandler(last_resort)
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authserver: "), lines
    for word in words:
        assert word in lines[0]
    assert result.stdout == ""
    return lines[0]


def revision_of(database_url: str) -> str | None:
    async def current() -> str | None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(current())


def upgrade(database_url: str) -> None:
    async def run() -> None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def sqlite_url_in(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'authserver.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> Iterator[str]:
    """A database of this test's own, with no schema yet."""
    if request.param == "sqlite":
        yield sqlite_url_in(tmp_path)
        return
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    with scratch_database(postgres_url, "cli") as url:
        yield url


@pytest.fixture
def empty_postgres(postgres_url: str | None) -> Iterator[str]:
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    with scratch_database(postgres_url, "cli") as url:
        yield url


@pytest.fixture
def migrated_url(empty_url: str) -> str:
    upgrade(empty_url)
    return empty_url


def make_cli(tmp_path: Path, database_url: str) -> Cli:
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return Cli(database_url, tmp_path / "keys", cwd)


@pytest.fixture
def cli(tmp_path: Path, migrated_url: str) -> Cli:
    """The CLI on a migrated database of its own (SQLite, then Postgres)."""
    return make_cli(tmp_path, migrated_url)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    """The CLI on a fresh SQLite file, for what does not depend on the database."""
    return make_cli(tmp_path, sqlite_url_in(tmp_path))


@pytest.fixture
async def http(cli: Cli) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on the CLI's database and keys, to check what the CLI wrote works."""
    app: Starlette = create_app(make_settings(cli.database_url, cli.keys_dir))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            yield client


async def password_login(
    http: httpx.AsyncClient, username: str, password: str, **fields: str
) -> httpx.Response:
    data = {"grant_type": "password", "username": username, "password": password}
    return await http.post("/token", data={**data, "client_id": "spa", **fields})


def claims(access_token: str) -> dict[str, object]:
    found: dict[str, object] = jwt.decode(access_token, options={"verify_signature": False})
    return found


def key_rows(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["kid", "alg", "state"]
    return [row.split() for row in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# migrate


def test_migrate_brings_a_fresh_database_to_head(tmp_path: Path, empty_url: str) -> None:
    cli = make_cli(tmp_path, empty_url)
    assert revision_of(empty_url) is None

    first = cli("migrate")
    assert first.returncode == 0, first.stderr
    assert revision_of(empty_url) == migrate.head_revision()

    again = cli("migrate")  # every replica may run it on start
    assert again.returncode == 0, again.stderr
    assert revision_of(empty_url) == migrate.head_revision()
    assert "Traceback" not in first.stderr + again.stderr


# users create


async def test_a_created_user_can_log_in(cli: Cli, http: httpx.AsyncClient) -> None:
    spa = cli(
        "clients", "create", "spa", "--public", "--grant", "password", "--grant", "refresh_token",
        "--scope", "profile",
    )  # fmt: skip
    assert spa.returncode == 0, spa.stderr
    assert spa.stdout == ""  # a public client has no secret to show

    created = cli(
        "users", "create", "alice", "--scope", "profile", "--password-stdin",
        stdin="correct horse\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    sub = created.stdout.strip()
    assert created.stdout == f"{sub}\n"
    assert str(uuid.UUID(sub)) == sub

    login = await password_login(http, "alice", "correct horse")
    assert login.status_code == 200, login.text
    body = login.json()
    assert claims(body["access_token"])["sub"] == sub
    assert body["scope"] == "profile"
    assert body["refresh_token"]

    # The newline ended the line; it is not part of the password.
    with_newline = await password_login(http, "alice", "correct horse\n")
    assert with_newline.status_code == 400
    assert with_newline.json()["error"] == "invalid_grant"


async def test_admin_flag_grants_the_admin_scope(cli: Cli, http: httpx.AsyncClient) -> None:
    spa = cli(
        "clients", "create", "spa", "--public", "--grant", "password",
        "--scope", "profile", "--scope", "admin",
    )  # fmt: skip
    assert spa.returncode == 0, spa.stderr
    root = cli("users", "create", "root", "--admin", "--password-stdin", stdin="root passphrase\n")
    alice = cli(
        "users",
        "create",
        "alice",
        "--scope",
        "profile",
        "--password-stdin",
        stdin="alice passphrase\n",
    )
    assert root.returncode == 0, root.stderr
    assert alice.returncode == 0, alice.stderr

    as_root = await password_login(http, "root", "root passphrase", scope="admin")
    assert as_root.status_code == 200, as_root.text
    assert "admin" in str(claims(as_root.json()["access_token"])["scope"]).split()

    as_alice = await password_login(http, "alice", "alice passphrase", scope="admin")
    assert "admin" not in as_alice.json().get("scope", "").split()
    if as_alice.status_code == 200:
        token_scope = claims(as_alice.json()["access_token"])["scope"]
        assert "admin" not in str(token_scope).split()


def test_users_create_refuses_bad_input(cli: Cli) -> None:
    first = cli("users", "create", "alice", "--password-stdin", stdin="first passphrase\n")
    assert first.returncode == 0, first.stderr

    taken = cli("users", "create", "alice", "--password-stdin", stdin="second passphrase\n")
    assert_one_line_error(taken, "alice", "taken")

    no_flag = cli("users", "create", "bob", stdin="pw\n")
    assert_one_line_error(no_flag, "--password-stdin")

    empty = cli("users", "create", "bob", "--password-stdin", stdin="\n")
    assert_one_line_error(empty, "empty")

    # None of the refusals made bob.
    bob = cli("users", "create", "bob", "--password-stdin", stdin="bob passphrase\n")
    assert bob.returncode == 0, bob.stderr


# clients create


async def test_a_created_client_gets_a_working_secret(cli: Cli, http: httpx.AsyncClient) -> None:
    created = cli("clients", "create", "svc", "--scope", "read")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.splitlines()[-1]
    assert created.stdout == f"{secret}\n"  # the secret alone, on its own line
    assert len(secret) >= 32 and " " not in secret
    assert secret not in created.stderr

    token = await http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("svc", secret)
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "read"
    assert claims(token.json()["access_token"])["client_id"] == "svc"

    wrong = await http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("svc", secret[:-1] + "x")
    )
    assert wrong.status_code == 401


async def test_clients_create_takes_redirect_uris(cli: Cli) -> None:
    created = cli(
        "clients", "create", "web", "--public", "--grant", "authorization_code",
        "--redirect-uri", "https://app.example/cb", "--redirect-uri", "http://127.0.0.1:5173/",
        "--post-logout-redirect-uri", "https://app.example/bye",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    engine = create_async_engine(cli.database_url, poolclass=NullPool)
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT redirect_uris, post_logout_redirect_uris FROM clients"))
        ).one()
    await engine.dispose()
    assert tuple(row) == (
        "https://app.example/cb http://127.0.0.1:5173/",
        "https://app.example/bye",
    )

    fragment = cli(
        "clients", "create", "other", "--public", "--grant", "authorization_code",
        "--redirect-uri", "https://app.example/cb#x",
    )  # fmt: skip
    assert_one_line_error(fragment, "redirect_uris", "fragment")
    no_uri = cli("clients", "create", "other", "--public", "--grant", "authorization_code")
    assert_one_line_error(no_uri, "redirect_uris")


def test_clients_create_refuses_bad_input(cli: Cli) -> None:
    assert cli("clients", "create", "svc").returncode == 0

    taken = cli("clients", "create", "svc")
    assert_one_line_error(taken, "svc", "taken")

    unknown = cli("clients", "create", "other", "--grant", "implicit")
    assert_one_line_error(unknown, "implicit")

    public_cc = cli("clients", "create", "other", "--public", "--grant", "client_credentials")
    assert_one_line_error(public_cc, "client_credentials")

    bad_scope = cli("clients", "create", "other", "--scope", 'quo"te')
    assert_one_line_error(bad_scope, "scope")

    # None of the refusals registered "other".
    other = cli("clients", "create", "other", "--public", "--grant", "password")
    assert other.returncode == 0, other.stderr
    assert other.stdout == ""


# keys list


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_keys_list_makes_an_active_and_a_next_key(cli: Cli, alg: str) -> None:
    env = {} if alg == "RS256" else {"SIGNING_ALG": alg}  # RS256 is the default
    listed = cli("keys", "list", env=env)
    rows = key_rows(listed)
    assert sorted(row[2] for row in rows) == ["active", "next"]
    assert {row[1] for row in rows} == {alg}
    assert all(len(row[0]) == 43 for row in rows)  # RFC 7638 SHA-256 thumbprint
    for private in ("PRIVATE", "BEGIN", '"d"'):
        assert private not in listed.stdout + listed.stderr

    # A second listing shows the same keys: it makes keys only when there are none.
    assert key_rows(cli("keys", "list", env=env)) == rows


# settings


@pytest.mark.parametrize(
    "command",
    [
        ("migrate",),
        ("serve", "--port", "0"),
        ("users", "create", "alice", "--password-stdin"),
        ("clients", "create", "svc"),
        ("keys", "list"),
    ],
)
def test_bad_settings_are_one_line_each(sqlite_cli: Cli, command: tuple[str, ...]) -> None:
    result = sqlite_cli(
        *command, stdin="pw\n", env={"ACCESS_TOKEN_TTL": "abc", "SIGNING_ALG": "HS256"}
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert sum("AUTHSERVER_ACCESS_TOKEN_TTL" in line for line in lines) == 1
    assert sum("AUTHSERVER_SIGNING_ALG" in line for line in lines) == 1
    assert result.stdout == ""
    assert not (sqlite_cli.cwd.parent / "authserver.db").exists()  # nothing was touched


def test_the_installed_script_exits_with_mains_status(sqlite_cli: Cli) -> None:
    # The other tests call main() in this process; the console script ([project.scripts]) is
    # what an operator's scripts run, and it must hand main()'s status on to them.
    assert sqlite_cli("migrate").returncode == 0
    assert sqlite_cli("clients", "create", "svc", process=True).returncode == 0
    taken = sqlite_cli("clients", "create", "svc", process=True)
    assert taken.returncode == 4
    assert_one_line_error(taken, "taken")
    assert sqlite_cli("clients", "show", "nobody", process=True).returncode == 3
    refused = sqlite_cli("clients", "create", "web", "--grant", "implicit", process=True)
    assert refused.returncode == 1
    assert_one_line_error(refused, "implicit")
    bad = sqlite_cli("keys", "list", env={"SIGNING_ALG": "HS256"}, process=True)
    assert bad.returncode == 2
    assert_one_line_error(bad, "AUTHSERVER_SIGNING_ALG")


@pytest.mark.parametrize("kek", ["not base64 at all!", base64.b64encode(b"short").decode()])
def test_a_bad_key_encryption_key_is_named_but_not_shown(sqlite_cli: Cli, kek: str) -> None:
    result = sqlite_cli("keys", "list", env={"KEY_ENCRYPTION_KEY": kek})
    assert result.returncode == 2
    line = assert_one_line_error(result, "AUTHSERVER_KEY_ENCRYPTION_KEY")
    assert kek not in line


def test_keys_sealed_under_another_key_are_one_line(sqlite_cli: Cli) -> None:
    assert sqlite_cli("keys", "list").returncode == 0
    other = base64.b64encode(b"o" * 32).decode()
    refused = sqlite_cli("keys", "list", env={"KEY_ENCRYPTION_KEY": other})
    assert_one_line_error(refused, "AUTHSERVER_KEY_ENCRYPTION_KEY", "decrypted")


def test_an_unreachable_database_is_one_line(sqlite_cli: Cli, tmp_path: Path) -> None:
    missing_dir = f"sqlite+aiosqlite:///{tmp_path / 'no such dir' / 'authserver.db'}"
    assert_one_line_error(sqlite_cli("migrate", env={"DATABASE_URL": missing_dir}))

    closed = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/authserver"
    assert_one_line_error(sqlite_cli("migrate", env={"DATABASE_URL": closed}))


def test_a_missing_postgres_database_is_one_line(sqlite_cli: Cli, postgres_url: str | None) -> None:
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    missing = make_url(postgres_url).set(database=f"missing_{secrets.token_hex(4)}")
    url = missing.render_as_string(hide_password=False)
    assert_one_line_error(sqlite_cli("migrate", env={"DATABASE_URL": url}), "does not exist")


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("migrate",), ("keys", "list")])
def test_an_unknown_setting_stops_every_command(sqlite_cli: Cli, command: tuple[str, ...]) -> None:
    # A typo used to leave the setting at its default: a fresh ./authserver.db, new keys.
    typo = {"DATABSE_URL": sqlite_cli.database_url, "DATABASE_URL": None}
    result = sqlite_cli(*command, env=typo)
    assert result.returncode == 2
    line = assert_one_line_error(result, "AUTHSERVER_DATABSE_URL", "AUTHSERVER_DATABASE_URL")
    assert line.endswith("did you mean AUTHSERVER_DATABASE_URL?")
    assert not list(sqlite_cli.cwd.iterdir())  # no ./authserver.db, no keys/


def test_the_test_suites_own_variables_are_not_refused(sqlite_cli: Cli) -> None:
    test_only = {"TEST_DATABASE_URL": "postgresql+asyncpg://x@h/db", "TEST_PG_PROBE": "h:1"}
    assert sqlite_cli("migrate", env=test_only).returncode == 0


def test_an_unreachable_host_is_named_with_the_setting(sqlite_cli: Cli) -> None:
    # The driver alone said "[Errno -2] Name or service not known", and nothing of where.
    url = "postgresql+asyncpg://auth:s3cret@no-such-host.invalid:5432/authserver"
    line = assert_one_line_error(
        sqlite_cli("migrate", env={"DATABASE_URL": url}),
        "AUTHSERVER_DATABASE_URL",
        "no-such-host.invalid:5432",
    )
    assert "s3cret" not in line

    port = free_port()
    closed = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/authserver"
    refused = sqlite_cli("keys", "list", env={"DATABASE_URL": closed})
    assert_one_line_error(refused, "AUTHSERVER_DATABASE_URL", f"127.0.0.1:{port}")


def test_a_missing_kek_is_said_and_nothing_is_written(cli: Cli) -> None:
    # Keys sealed under AUTHSERVER_KEY_ENCRYPTION_KEY; then a start without it used to write a
    # new kek file and say the key was wrong.
    assert cli("keys", "list").returncode == 0
    for command in (("keys", "list"), ("serve", "--port", "0"), ("keys", "rotate")):
        refused = cli(*command, env={"KEY_ENCRYPTION_KEY": None})
        assert_one_line_error(refused, "AUTHSERVER_KEY_ENCRYPTION_KEY is not set")
    assert not (cli.keys_dir / "kek").exists()
    assert not list(cli.cwd.iterdir())
    # migrate does not open the keys: it needs no KEK.
    assert cli("migrate", env={"KEY_ENCRYPTION_KEY": None}).returncode == 0


# the key encryption key file


def test_the_kek_file_is_made_once_with_mode_0600(sqlite_cli: Cli) -> None:
    # With no AUTHSERVER_KEY_ENCRYPTION_KEY and the default keys dir, keys/ under the cwd.
    unset: dict[str, str | None] = {"KEY_ENCRYPTION_KEY": None, "KEYS_DIR": None}
    kek = sqlite_cli.cwd / "keys" / "kek"
    rows = key_rows(sqlite_cli("keys", "list", env=unset))
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600
    made = kek.read_bytes()
    assert len(base64.b64decode(made.strip(), validate=True)) == 32

    # The next run reuses it, so the keys sealed under it still open.
    assert key_rows(sqlite_cli("keys", "list", env=unset)) == rows
    assert kek.read_bytes() == made

    kek.chmod(0o644)
    assert_one_line_error(sqlite_cli("keys", "list", env=unset), "kek")


# serve


@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--port", "0"),
        ("users", "create", "alice", "--password-stdin"),
        ("clients", "create", "svc"),
        ("keys", "list"),
    ],
)
def test_an_unmigrated_postgres_is_refused(
    tmp_path: Path, empty_postgres: str, command: tuple[str, ...]
) -> None:
    cli = make_cli(tmp_path, empty_postgres)
    refused = cli(*command, stdin="pw\n")
    assert_one_line_error(refused, "authserver migrate")
    assert revision_of(empty_postgres) is None  # refused, not migrated behind the operator's back


def test_serve_on_a_fresh_sqlite_file_migrates_and_serves(sqlite_cli: Cli, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    server = sqlite_cli.popen("serve", "--port", str(port), log=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}

        jwks = httpx.get(f"{base}/.well-known/jwks.json", timeout=5)
        assert jwks.status_code == 200
        keys = jwks.json()["keys"]
        assert len(keys) == 2  # the active key and the next one
        for key in keys:
            assert key["alg"] == "RS256"
            assert key["use"] == "sig"
            assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)

        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert "Traceback" not in log.read_text()
    assert revision_of(sqlite_cli.database_url) == migrate.head_revision()
    # The keys the server made are in the database the CLI reads.
    listed = key_rows(sqlite_cli("keys", "list"))
    assert {row[0] for row in listed} == {key["kid"] for key in keys}


def test_serve_names_what_it_serves_and_its_issuer_follows_its_port(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    # AUTHSERVER_ISSUER unset: it used to name :8000 whatever port `serve` bound.
    port = free_port()
    log = tmp_path / "serve.log"
    url = sqlite_cli.database_url
    server = sqlite_cli.popen("serve", "--port", str(port), log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        metadata = wait_until_serving(server, base, log)
        assert metadata.json()["issuer"] == base
        assert metadata.json()["token_endpoint"] == f"{base}/token"
        active = [row for row in key_rows(sqlite_cli("keys", "list")) if row[2] == "active"]
    finally:
        server.terminate()
        server.wait(timeout=15)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    started = [line for line in lines if line["msg"].startswith("serving ")]
    assert len(started) == 1, lines
    assert started[0]["level"] == "info"
    assert started[0]["issuer"] == base
    assert started[0]["database"] == url
    assert (started[0]["kid"], started[0]["alg"]) == (active[0][0], active[0][1])
    assert started[0]["workers"] == 1
    assert started[0]["mail"] == "off (AUTHSERVER_SMTP_URL unset)"


def wait_until_serving(server: subprocess.Popen[bytes], base: str, log: Path) -> httpx.Response:
    """The metadata document, once `serve` answers (its log, if it died or never answered)."""
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/.well-known/oauth-authorization-server", timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def test_a_running_serve_sends_the_mail_that_mail_test_queues(
    sqlite_cli: Cli, tmp_path: Path, smtp: SmtpServer
) -> None:
    mail = {"SMTP_URL": smtp.url, "MAIL_FROM": "Auth <auth@example.test>"}
    log, port = tmp_path / "serve.log", free_port()
    server = sqlite_cli.popen("serve", "--port", str(port), log=log, env=mail)
    try:
        wait_until_serving(server, f"http://127.0.0.1:{port}", log)
        queued = sqlite_cli("mail", "test", "ops@example.test", env=mail)
        assert queued.returncode == 0, queued.stderr
        [received] = smtp.wait_for(1, timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert received.envelope_to == ["ops@example.test"]
    assert received.message["Subject"] == "Test mail from authserver"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [started] = [line for line in lines if line["msg"].startswith("serving ")]
    assert started["mail"] == f"on via smtp://127.0.0.1:{smtp.port}"
    assert started["msg"].endswith(f"mail on via smtp://127.0.0.1:{smtp.port}")


def test_the_start_up_line_hides_the_database_password() -> None:
    from authserver.cli.server import bound_issuer, database_for_humans

    shown = database_for_humans("postgresql+asyncpg://auth:s3cret@db:5432/authserver")
    assert shown == "postgresql+asyncpg://auth:***@db:5432/authserver"
    assert bound_issuer("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert bound_issuer("::", 9000) == "http://127.0.0.1:9000"
    assert bound_issuer("::1", 9000) == "http://[::1]:9000"
    assert bound_issuer("auth.internal", 80) == "http://auth.internal:80"


# the CLI goes through the admin API's use cases


def audit_rows(cli: Cli) -> list[tuple[str, str, str, dict[str, object]]]:
    async def read() -> list[tuple[str, str, str, dict[str, object]]]:
        engine = create_async_engine(cli.database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT actor, action, target, detail FROM audit_events ORDER BY id")
                )
                return [(r.actor, r.action, r.target, json.loads(r.detail)) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_users_and_clients_created_by_the_cli_are_audited_as_cli(cli: Cli) -> None:
    user = cli(
        "users",
        "create",
        "alice",
        "--scope",
        "profile",
        "--password-stdin",
        stdin="alice passphrase\n",
    )
    client = cli("clients", "create", "svc", "--scope", "read")
    assert user.returncode == 0 and client.returncode == 0, user.stderr + client.stderr
    created = [row for row in audit_rows(cli) if row[1] in ("user.created", "client.created")]
    assert created == [
        ("cli", "user.created", user.stdout.strip(), {"username": "alice", "scopes": ["profile"]}),
        (
            "cli",
            "client.created",
            "svc",
            {
                "client_id": "svc",
                "public": False,
                "grant_types": ["client_credentials"],
                "scopes": ["read"],
                "refresh_delivery": "body",
                "redirect_uris": [],
                "post_logout_redirect_uris": [],
                "client_name": None,
                "allowed_origins": [],
                "require_mfa": False,
                "dpop_bound_access_tokens": False,
                "resources": [],
            },
        ),
    ]


def test_the_cli_applies_the_admin_apis_input_rules(cli: Cli) -> None:
    too_many = cli("clients", "create", "svc", *[f"--scope=s{i}" for i in range(65)])
    assert_one_line_error(too_many, "scopes")
    assert cli("clients", "create", "svc").returncode == 0  # the refusal made nothing
