"""A real, fresh Postgres database for the test session.

Tried in order: a URL the caller provides (AUTHSERVER_TEST_DATABASE_URL), a running server
(AUTHSERVER_TEST_PG_PROBE, default 127.0.0.1:5432, trust auth as user postgres), a throwaway
cluster made with the initdb/pg_ctl found on this machine. Outside CI, with none of these,
the Postgres tests are skipped; in CI that is an error, so a broken setup cannot pass quietly.
A throwaway cluster that fails to start is an error everywhere, with the output that says why.

Under pytest-xdist each worker (PYTEST_XDIST_WORKER, e.g. gw0) has a database of its own: the
caller's URL gives the server and the name, the worker makes `<name>_gw0` beside it and drops it
afterwards; the other ways already make a fresh database per process.

Call it from synchronous code (e.g. a session-scoped sync fixture): it runs its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread
import asyncpg
import pytest


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """Yields an SQLAlchemy URL 'postgresql+asyncpg://...' of a fresh, empty database, dropped
    afterwards; None when no Postgres can be had outside CI."""
    if url := os.environ.get("AUTHSERVER_TEST_DATABASE_URL"):
        if worker := os.environ.get("PYTEST_XDIST_WORKER"):
            # Two workers in one database would empty each other's tables mid-test.
            with _worker_database(url, worker) as own:
                yield own
            return
        yield url  # the caller made it and will drop it
        return
    probe = os.environ.get("AUTHSERVER_TEST_PG_PROBE", "127.0.0.1:5432")
    host, _, port = probe.rpartition(":")
    if _answers(host, int(port)):
        with _fresh_database(host, int(port)) as url:
            yield url
        return
    if (bindir := _pg_bindir()) is not None:
        with _throwaway_cluster(bindir) as own_port, _fresh_database("127.0.0.1", own_port) as url:
            yield url
        return
    if os.environ.get("CI"):
        raise RuntimeError(
            f"No Postgres could be found or started (nothing answered at {probe} and no "
            "initdb/pg_ctl was found), and the Postgres tests must not be skipped in CI."
        )
    yield None


async def _execute(
    host: str, port: int, sql: str, user: str = "postgres", password: str | None = None
) -> None:
    conn = await asyncpg.connect(
        host=host, port=port, user=user, password=password, database="postgres", timeout=3
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _answers(host: str, port: int) -> bool:
    try:
        asyncio.run(_execute(host, port, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):  # OSError covers timeouts
        return False
    return True


@contextlib.contextmanager
def _fresh_database(host: str, port: int) -> Iterator[str]:
    with scratch_database(f"postgresql+asyncpg://postgres@{host}:{port}/authserver_test") as url:
        yield url


@contextlib.contextmanager
def scratch_database(server_url: str, label: str = "") -> Iterator[str]:
    """A new, empty database on the server of `server_url` (as user postgres), dropped
    afterwards: for tests that need a schema-less database of their own. Call from sync code."""
    parts = urlsplit(server_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    # pid + random suffix: parallel runs (and a crashed earlier run) never collide.
    base = parts.path.lstrip("/") or "authserver_test"
    name = "_".join(filter(None, [base, label, str(os.getpid()), secrets.token_hex(4)]))
    asyncio.run(_execute(host, port, f'CREATE DATABASE "{name}"'))
    # Thrown away afterwards, so a commit need not wait for its WAL to reach the disk (as the
    # throwaway clusters below run with fsync=off): transactions, locks and isolation are
    # unchanged, only a crash of the server could lose the last commits. On a shared 2-core
    # machine the WAL flush was most of a test's Postgres setup.
    asyncio.run(_execute(host, port, f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        # FORCE: a leaked pool connection must not keep the database alive.
        asyncio.run(_execute(host, port, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def _worker_database(url: str, worker: str) -> Iterator[str]:
    """`url`'s database name with `_<worker>` appended, made on the same server as the same user
    (dropped first if a killed run left it), dropped afterwards."""
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')}_{worker}"
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    user, password = parts.username or "postgres", parts.password

    def execute(sql: str) -> None:
        asyncio.run(_execute(host, port, sql, user, password))

    execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: the ones on PATH, else Debian's, newest first."""
    candidates = []
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)  # /usr/local/bin/initdb may be a link

    def version(bindir: str) -> list[int]:
        return [int(part) for part in Path(bindir).parent.name.split(".") if part.isdigit()]

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += [Path(d) for d in debian]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


# UTF8 and the C locale whatever this machine's locale is (it may be plain POSIX).
_INITDB_SETTINGS = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]


@contextlib.contextmanager
def _throwaway_cluster(bindir: Path) -> Iterator[int]:
    """Starts a private cluster on a free port of 127.0.0.1; yields the port."""
    # Postgres refuses to run as root, so root runs it as the postgres system user, in a
    # directory under /tmp that user can reach (mkdtemp makes it 0700; it is chowned below).
    as_root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp(prefix="authserver-pg-", dir="/tmp" if as_root else None))
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"  # sbin may be off PATH
    prefix = [runuser, "-u", "postgres", "--"] if as_root else []
    data, log = tmp / "data", tmp / "postgres.log"

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}{tail}")

    try:
        if as_root:
            user = pwd.getpwnam("postgres")
            os.chown(tmp, user.pw_uid, user.pw_gid)
        run(str(bindir / "initdb"), "-D", str(data), *_INITDB_SETTINGS)
        with socket.socket() as s:  # ask the kernel for a free port
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # The socket lives in tmp, not /var/run/postgresql, which may not exist or be writable;
        # fsync=off because the data is thrown away anyway. -w waits until it accepts connections.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={tmp} -c fsync=off"
        )
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
        try:
            run(*pg_ctl, "-l", str(log), "-o", options, "start")
            yield port
        finally:
            if (data / "postmaster.pid").exists():  # also after a start that timed out
                run(*pg_ctl, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Cluster:
    """A Postgres cluster of a test's own, its postmaster this process's child, so the test can
    restart it or kill -9 it (and reap it: a killed postmaster left to an init that does not
    reap would hold its lock file and the next start would refuse to run)."""

    def __init__(
        self, bindir: Path, tmp: Path, port: int, settings: dict[str, str] | None = None
    ) -> None:
        self.bindir, self.tmp, self.port = bindir, tmp, port
        self.settings = dict(settings or {})  # more `-c name=value`, e.g. for replication
        self.data, self.log = tmp / "data", tmp / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        # Postgres refuses to run as root: root runs it as the postgres system user.
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Starts the postmaster and returns at once: it accepts connections while it starts
        up and recovers, refusing them with 57P03 until it is ready."""
        assert self.process is None, "already running"
        options = [
            *("-D", str(self.data), "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.tmp}"),
            *("-c", "fsync=off"),  # thrown away afterwards; a killed postmaster loses nothing
            *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), *options],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user else None,
            )

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended (57P01), the postmaster exits cleanly."""
        self._end(signal.SIGINT)

    def kill(self) -> None:
        """kill -9 of the postmaster alone; its backends notice and exit on their own."""
        self._end(signal.SIGKILL)

    def wait_ready(self, timeout: float = 30) -> None:
        """Blocks until a connection succeeds (call it in a thread from async code)."""
        deadline = time.monotonic() + timeout
        while not _answers("127.0.0.1", self.port):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.process = None


@contextlib.asynccontextmanager
async def own_cluster(settings: dict[str, str] | None = None) -> AsyncIterator[Cluster]:
    """A new cluster on a free port of 127.0.0.1, started and ready; skipped (outside CI)
    where no initdb is found. Stopped and removed afterwards."""
    bindir = _own_bindir()
    async with _own_cluster(bindir, [str(bindir / "initdb"), *_INITDB_SETTINGS], settings) as c:
        yield c


@contextlib.asynccontextmanager
async def own_standby(
    primary: Cluster, settings: dict[str, str] | None = None
) -> AsyncIterator[Cluster]:
    """A streaming standby of `primary` (pg_basebackup -R: standby.signal and primary_conninfo
    written for it), started and ready to serve reads. `settings` may name it, e.g.
    {"cluster_name": "b"} for the primary's synchronous_standby_names."""
    basebackup = [
        str(primary.bindir / "pg_basebackup"),
        *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
        *("-R", "-X", "stream", "--no-sync"),
    ]
    async with _own_cluster(primary.bindir, basebackup, settings) as standby:
        yield standby


def _own_bindir() -> Path:
    if (bindir := _pg_bindir()) is None:
        if os.environ.get("CI"):
            raise RuntimeError("no initdb/pg_ctl was found, and this test must not skip in CI")
        pytest.skip("no initdb/postgres found to make a cluster of the test's own")
    return bindir


@contextlib.asynccontextmanager
async def _own_cluster(
    bindir: Path, make: list[str], settings: dict[str, str] | None
) -> AsyncIterator[Cluster]:
    """Makes a data directory with `make` (which gets `-D dir`), starts it on a free port."""
    as_root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp(prefix="authserver-pg-", dir="/tmp" if as_root else None))
    user = "postgres" if as_root else None
    try:
        if as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        done = await anyio.to_thread.run_sync(
            functools.partial(
                subprocess.run,
                [*make, "-D", str(tmp / "data")],
                cwd=tmp,
                capture_output=True,
                text=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(make[0]).name} failed:\n{done.stdout}{done.stderr}")
        cluster = Cluster(bindir, tmp, free_loopback_port(), settings)
        cluster.start()
        try:
            await anyio.to_thread.run_sync(cluster.wait_ready)
            yield cluster
        finally:
            await anyio.to_thread.run_sync(cluster.stop)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def free_loopback_port() -> int:
    with socket.socket() as s:  # ask the kernel for a free port
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
