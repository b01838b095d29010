"""A highly available Postgres of the test's own: Patroni over etcd, Debian's packages.

One etcd member and two Patroni nodes, each running a Postgres 15 on a loopback port: a
primary and a streaming standby, synchronous or not (Patroni's synchronous_mode). The leader
key lives TTL seconds in etcd; when the primary's Patroni and Postgres are killed with
SIGKILL, the key expires and the standby's Patroni promotes it. The processes run as the
postgres system user when the tests run as root (Postgres refuses root).

Why Patroni and etcd, not pg_auto_failover: it is what the issue's operators run, it needs
two Postgres instances rather than three (pg_auto_failover's monitor is a third), and its
timing is a few settings (ttl, loop_wait, retry_timeout) the bed can shorten.

Installed with apt-get in CI (root); elsewhere, when missing, the tests that need it skip.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import httpx
import pytest

from tests._locks import apt_get_install
from tests._postgres import _pg_bindir, free_loopback_port

PATRONI, ETCD = Path("/usr/bin/patroni"), Path("/usr/bin/etcd")
# Seconds: the leader key's life, Patroni's loop, and its retries. loop_wait + 2 *
# retry_timeout must stay within ttl. Production uses 30/10/10; shorter here, to fit CI.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 8, 1, 3
# Bytes: a standby further behind the leader's last reported WAL position is not promoted
# (Patroni's maximum_lag_on_failover; 1 MiB is its default, the operators' limit too).
# `stall_replication` keeps the bed's standby well within it, whatever the load's speed.
MAXIMUM_LAG = 1024 * 1024
SCOPE = "authserver-ha"  # the cluster's name in etcd


def ensure_installed() -> None:
    apt_get_install(
        lambda: PATRONI.exists() and ETCD.exists(), "patroni", "etcd-server", timeout=600
    )
    if not (PATRONI.exists() and ETCD.exists()):
        pytest.skip("patroni or etcd is missing (apt-get install patroni etcd-server)")


@dataclass
class Node:
    name: str
    port: int  # Postgres
    api: int  # Patroni's REST API
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api}"


@dataclass
class Bed:
    tmp: Path
    nodes: list[Node]
    synchronous: bool
    etcd: int  # its client port
    killed: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Every node, as an operator lists them: the instances find the primary themselves."""
        hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql+asyncpg://postgres@/postgres?{hosts}&target_session_attrs=read-write"

    def node_url(self, node: Node) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{node.port}/postgres"

    async def roles(self) -> dict[str, str]:
        """Each live node's role as its Patroni reports it (primary, replica, ...)."""
        found = {}
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            for node in self.nodes:
                if node in self.killed:
                    continue
                try:
                    body = (await http.get(f"{node.api_url}/patroni")).json()
                except (httpx.HTTPError, ValueError):
                    continue
                found[node.name] = f"{body.get('role')}/{body.get('state')}"
        return found

    async def primary(self) -> Node | None:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            for node in self.nodes:
                if node in self.killed:
                    continue
                try:
                    if (await http.get(f"{node.api_url}/primary")).status_code == 200:
                        return node
                except httpx.HTTPError:
                    continue
        return None

    async def replica_ready(self) -> bool:
        """A replica streams (and, in synchronous mode, is the synchronous standby)."""
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            for node in self.nodes:
                path = "/synchronous" if self.synchronous else "/replica"
                try:
                    if (await http.get(f"{node.api_url}{path}")).status_code == 200:
                        return True
                except httpx.HTTPError:
                    continue
        return False

    async def stall_replication(self, *, lag: int, seconds: float) -> Stall:
        """Stops the primary's WAL sender (SIGSTOP), as a cut link would: from now on its
        commits reach the standby no more (stopping the standby's receiver would not do: on
        loopback the WAL waits in its socket buffer). Returns once the standby is `lag` bytes
        behind or `seconds` have passed, whichever comes first: bounded in time only, the lag
        would depend on how fast the load writes, and past MAXIMUM_LAG Patroni would rightly
        refuse to promote the standby."""
        primary = await self.primary()
        assert primary is not None
        (standby,) = (node for node in self.nodes if node is not primary)
        async with _connected(primary) as on_primary, _connected(standby) as on_standby:
            with anyio.fail_after(30):  # Patroni's /replica is 200 before the standby streams
                while (pid := await on_primary.fetchval(_SENDER)) is None:
                    await anyio.sleep(0.1)
            assert isinstance(pid, int)
            os.kill(pid, signal.SIGSTOP)
            ends = time.monotonic() + seconds
            while True:
                # Both as Patroni sees them: the leader's pg_current_wal_lsn() against the
                # replica's received or replayed position, whichever is further.
                written = await on_primary.fetchval(_WRITTEN)
                behind = written - await on_standby.fetchval(_RECEIVED)
                if behind >= lag or time.monotonic() >= ends:
                    return Stall(pid, behind)
                await anyio.sleep(0.01)

    async def leader_wal_position(self) -> int:
        """The leader's WAL position as its Patroni last wrote it to etcd (each loop_wait):
        what a standby's lag is measured against when the leader is gone."""
        key = base64.b64encode(f"/service/{SCOPE}/status".encode()).decode()
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            response = await http.post(
                f"http://127.0.0.1:{self.etcd}/v3/kv/range", json={"key": key}
            )
        (found,) = response.raise_for_status().json()["kvs"]
        position: int = json.loads(base64.b64decode(found["value"]))["optime"]
        return position

    def end(self, pid: int) -> None:
        """SIGKILL to a process stopped by `stall_replication`, once its primary is killed."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def kill(self, node: Node) -> None:
        """SIGKILL to the node's Patroni, so it cannot restart Postgres, then to its
        postmaster: the host as good as gone."""
        postmaster = _postmaster_pid(self.tmp / node.name)
        if node.process is not None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)
        self.killed.append(node)

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for log in sorted(self.tmp.glob("*.log"))
        )


@dataclass(frozen=True)
class Stall:
    sender: int  # the stopped WAL sender's pid
    lag: int  # bytes of WAL the standby had not received when the stall ended


_SENDER = "SELECT pid FROM pg_stat_replication WHERE state = 'streaming'"
_WRITTEN = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
_RECEIVED = (
    "SELECT pg_wal_lsn_diff(GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),"
    " '0/0')::bigint"
)


@contextlib.asynccontextmanager
async def _connected(node: Node) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=node.port, user="postgres", database="postgres"
    )
    try:
        yield conn
    finally:
        await conn.close()


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.asynccontextmanager
async def patroni_bed(*, synchronous: bool) -> AsyncIterator[Bed]:
    """etcd and two Patroni nodes, started; yields once a primary and a replica (the
    synchronous standby, if asked) are there. Everything is killed and removed afterwards."""
    ensure_installed()
    bindir = _pg_bindir()
    assert bindir is not None, "no Postgres binaries"
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else None
    tmp = Path(tempfile.mkdtemp(prefix="authserver-ha-", dir="/tmp" if as_root else None))
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (tmp / log).open("ab") as out:
            process = subprocess.Popen(
                args,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        processes.append(process)
        return process

    try:
        if as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        client, peer = free_loopback_port(), free_loopback_port()
        spawn(
            [
                str(ETCD),
                *("--name", "etcd", "--data-dir", str(tmp / "etcd")),
                *("--listen-client-urls", f"http://127.0.0.1:{client}"),
                *("--advertise-client-urls", f"http://127.0.0.1:{client}"),
                *("--listen-peer-urls", f"http://127.0.0.1:{peer}"),
                *("--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"),
                *("--initial-cluster", f"etcd=http://127.0.0.1:{peer}"),
                "--unsafe-no-fsync",
            ],
            "etcd.log",
        )
        nodes = [Node(name, free_loopback_port(), free_loopback_port()) for name in ("a", "b")]
        bed = Bed(tmp, nodes, synchronous, client)
        for node in nodes:
            config = tmp / f"{node.name}.yml"
            config.write_text(
                _config(node, tmp=tmp, bindir=bindir, etcd=client, synchronous=synchronous)
            )
            if as_root:
                os.chown(config, entry.pw_uid, entry.pw_gid)
            node.process = spawn([str(PATRONI), str(config)], f"{node.name}.log")
            if node is nodes[0]:  # the first bootstraps the cluster; then the other joins
                with anyio.fail_after(60):
                    while await bed.primary() is None:
                        await anyio.sleep(0.2)
        with anyio.fail_after(90):
            while not await bed.replica_ready():
                await anyio.sleep(0.2)
        yield bed
    except BaseException:
        print(bed.log_tail() if "bed" in locals() else "")  # noqa: T201 — shown on failure
        raise
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in processes:
            process.wait(timeout=10)
        for data in tmp.iterdir() if tmp.exists() else []:
            if (pid := _postmaster_pid(data)) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await anyio.to_thread.run_sync(time.sleep, 0.3)
        shutil.rmtree(tmp, ignore_errors=True)


def _config(node: Node, *, tmp: Path, bindir: Path, etcd: int, synchronous: bool) -> str:
    return f"""\
scope: {SCOPE}
name: {node.name}
log:
  level: INFO  # why a standby is not promoted (e.g. its lag) is said at INFO
restapi:
  listen: 127.0.0.1:{node.api}
  connect_address: 127.0.0.1:{node.api}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: {TTL}
    loop_wait: {LOOP_WAIT}
    retry_timeout: {RETRY_TIMEOUT}
    maximum_lag_on_failover: {MAXIMUM_LAG}
    synchronous_mode: {"true" if synchronous else "false"}
    postgresql:
      use_pg_rewind: false
      use_slots: true
      parameters:
        max_connections: 200
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        wal_keep_size: 64MB
  initdb:
    - encoding: UTF8
    - locale: C
    - auth: trust
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{node.port}
  connect_address: 127.0.0.1:{node.port}
  data_dir: {tmp / node.name}
  bin_dir: {bindir}
  pgpass: {tmp / f"{node.name}.pgpass"}
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
  parameters:
    unix_socket_directories: {tmp}
    fsync: "off"
"""
