"""Debian's PgBouncer in transaction mode, in front of the test session's Postgres.

Tests marked `pgbouncer` run a third time, on the "pgbouncer" backend: the server's pool goes
through PgBouncer (pool_mode=transaction, far fewer server connections than clients, so every
transaction may land on another one), while migrations, the listening connection and the
tests' own checks go straight to Postgres (AUTHSERVER_DATABASE_DIRECT_URL), as
docs/high-availability.md tells operators to run it.

PgBouncer is installed with apt-get in CI (which runs as root); elsewhere, when it is missing,
those variants are skipped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests._locks import apt_get_install

PGBOUNCER = Path("/usr/sbin/pgbouncer")
SERVER_CONNECTIONS = 4  # per database and user: fewer than any one instance's pool
# Pooled URL -> the direct URL of the same database, for make_settings and instance_env.
_DIRECT: dict[str, str] = {}


def direct_url_for(url: str) -> str | None:
    """The direct URL of a URL that goes through the test PgBouncer; None for any other."""
    return _DIRECT.get(url)


def ensure_pgbouncer() -> Path:
    apt_get_install(PGBOUNCER.exists, "pgbouncer", timeout=300)
    if not PGBOUNCER.exists():
        pytest.skip(f"{PGBOUNCER} is missing (apt-get install pgbouncer; CI installs it itself)")
    return PGBOUNCER


@contextlib.contextmanager
def pgbouncer_in_front_of(direct_url: str) -> Iterator[str]:
    """Starts PgBouncer on a free port of 127.0.0.1 in front of `direct_url`'s server; yields
    the same database's URL through it. Stopped and removed afterwards."""
    binary = ensure_pgbouncer()
    parts = urlsplit(direct_url)
    as_root = os.geteuid() == 0
    # PgBouncer refuses to run as root: root runs it as the postgres system user.
    user = "postgres" if as_root else None
    tmp = Path(tempfile.mkdtemp(prefix="authserver-pgbouncer-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        with socket.socket() as s:  # ask the kernel for a free port
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (tmp / "userlist.txt").write_text(f'"{parts.username or "postgres"}" ""\n')
        (tmp / "pgbouncer.ini").write_text(
            PGBOUNCER_INI.format(
                host=parts.hostname or "127.0.0.1",
                server_port=parts.port or 5432,
                port=port,
                tmp=tmp,
                size=SERVER_CONNECTIONS,
            )
        )
        log = tmp / "pgbouncer.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(binary), str(tmp / "pgbouncer.ini")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        deadline = time.monotonic() + 10
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
        pooled = urlunsplit(parts._replace(netloc=netloc))
        _DIRECT[pooled] = direct_url
        try:
            yield pooled
        finally:
            _DIRECT.pop(pooled, None)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# What docs/high-availability.md recommends, on loopback, trust authentication as the test
# Postgres has. server_reset_query is not run in transaction mode: nothing may need it.
PGBOUNCER_INI = """\
[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp}/userlist.txt
pool_mode = transaction
default_pool_size = {size}
max_client_conn = 500
pidfile = {tmp}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
"""
