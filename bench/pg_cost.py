"""Postgres's own cost of a refresh rotation and of a code exchange, without the HTTP server.

    .venv/bin/python bench/pg_cost.py [--rotations 20000] [--exchanges 5000] [--connections 16]
        [--fillfactor 100,90] [--codes-fillfactor 100] [--set commit_delay=0 ...]

Runs the server's own statements (db/families.py's rotation CTE, db/codes.py's exchange CTE),
compiled as db/direct.py hands them to asyncpg (named prepared statements, reused: asyncpg's
statement cache), on `--connections` connections at once, each spending a chain of tokens of
its own families (`--chains` per connection, spent in turn) or codes of its own.
Per configuration, a fresh database migrated to head, then `ALTER TABLE ... SET (fillfactor)`
before any row, so one checkout measures every fill factor. Printed per statement:

- CPU: utime + stime of the connections' backends (/proc/PID/stat), µs per statement;
- HOT: pg_stat_user_tables' n_tup_upd and n_tup_hot_upd of the updated table over the run;
- WAL: the run's records read back with pg_waldump (needs read access to the cluster's
  pg_wal, e.g. root on the database host): only those of this database's relations and the
  commits of their transactions, so other databases' traffic on the cluster is left out;
  records, bytes and full-page images per statement, and the records by kind (index entries
  are the Btree INSERT_LEAF/INSERT_UPPER/SPLIT records);
- plans: pg_prepared_statements' generic and custom plan counts of the statement on each
  connection (Postgres plans the first five executions custom, then may switch to generic),
  and planning and execution time of a few single runs under EXPLAIN (ANALYZE, BUFFERS, WAL);
- size: the table and its indexes after the run.

`--ddl SQL` (repeatable) runs SQL after the migrations, one configuration each (e.g. a
foreign key dropped, to see its share). `--set name=value` (repeatable) sets a session
parameter on every connection, e.g. commit_delay (superuser: the harness connects as
postgres) or plan_cache_mode; the machine's configuration is not touched. Each configuration
is measured `--rounds` times, alternating. Tokens spent in turn by many connections hit the
same pages in bursts, so HOT ratios swing between runs: compare several.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")
FAR = 4_000_000_000
REDIRECT = "https://app.test/cb"
WALDUMP = "/usr/lib/postgresql/15/bin/pg_waldump"
RECORD = re.compile(
    r"rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: \S+, prev \S+, "
    r"desc: (\S+)(.*)"
)
RELATION = re.compile(r"rel \d+/(\d+)/(\d+)")


@dataclass
class Config:
    tokens_fillfactor: int
    codes_fillfactor: int
    settings: dict[str, str]
    ddl: str = ""

    def name(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))
        if self.ddl:
            extra = f"{extra} {self.ddl}".strip()
        return f"rotated table ff {self.tokens_fillfactor}, codes ff {self.codes_fillfactor}" + (
            f", {extra}" if extra else ""
        )


@dataclass
class Result:
    count: int
    cpu_us: float
    client_us: float  # this process (asyncpg: binding the parameters, decoding the rows)
    upd: int
    hot: int
    wal_records: float
    wal_bytes: float
    fpi: float
    kinds: dict[str, float] = field(default_factory=dict)
    plans: str = ""
    sizes: str = ""
    rate: float = 0


def compiled(statement: Any) -> tuple[str, list[str]]:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    done = statement.compile(dialect=PGDialect_asyncpg())
    return done.string, list(done.positiontup or ())


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare(db: str, config: Config, users: int) -> str:
    """A fresh database at head with the fill factors set, one client per grant, `users`
    users each with a live login session."""
    import asyncpg
    from sqlalchemy.ext.asyncio import create_async_engine

    from authserver.db import migrate

    await admin(f"CREATE DATABASE {db}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate.upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(dsn)
    try:
        # The table the rotation updates: from 0030 the family's row holds the live token.
        in_family = await conn.fetchval("SELECT to_regclass('spent_refresh_tokens') IS NOT NULL")
        tokens_table = "refresh_families" if in_family else "refresh_tokens"
        await conn.execute(
            f"ALTER TABLE {tokens_table} SET (fillfactor = {config.tokens_fillfactor});"
            f"ALTER TABLE authorization_codes SET (fillfactor = {config.codes_fillfactor})"
        )
        if config.ddl:
            await conn.execute(config.ddl)
        await conn.execute(
            "INSERT INTO clients (client_id, grant_types, scopes, refresh_delivery, created_at,"
            " redirect_uris) VALUES ('app', 'password refresh_token', 'profile', 'body', 0, ''),"
            " ('web', 'authorization_code refresh_token', 'openid profile', 'body', 0, $1)",
            REDIRECT,
        )
        now = int(time.time())
        await conn.executemany(
            "INSERT INTO users (id, username, username_key, password_hash, scopes, disabled,"
            " created_at) VALUES ($1, $2, $3, 'x', 'profile', false, 0)",
            [(str(uuid.uuid4()), f"user{i}", f"user{i}") for i in range(users)],
        )
        await conn.execute(
            "INSERT INTO login_sessions (id, token_hash, user_id, created_at, last_used_at,"
            " expires_at) SELECT gen_random_uuid()::text, md5(id) || md5(id), id, $1, $1, $2"
            " FROM users",
            now,
            FAR,
        )
    finally:
        await conn.close()
    return dsn


async def stats(conn: Any, table: str) -> tuple[int, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1", table
    )
    return int(row[0]), int(row[1])


async def flush_stats(conns: list[Any]) -> None:
    """Each backend's pending table counters, flushed as it goes idle after this."""
    for conn in conns:
        await conn.execute("SELECT pg_stat_force_next_flush()")
    await asyncio.sleep(0.3)


def waldump(
    start: str, end: str, dboid: int, names: dict[int, str]
) -> tuple[int, int, int, dict[str, int]]:
    """Records, bytes, full-page images and records by kind between two LSNs, of this
    database's relations and the commits of the transactions that wrote them."""
    pg_wal = "/var/lib/postgresql/15/main/pg_wal"
    done = subprocess.run(
        [WALDUMP, "-p", pg_wal, "-s", start, "-e", end], capture_output=True, text=True
    )
    parsed = []
    for line in done.stdout.splitlines():
        found = RECORD.match(line)
        if found:
            rmgr, _, total, xid, desc, rest = found.groups()
            rels = RELATION.findall(rest)
            mine = any(int(db) == dboid for db, _ in rels)
            parsed.append((rmgr, int(total), int(xid), desc, rest, rels, mine))
    # Ours: a record on one of this database's relations, and every record of a transaction
    # that wrote one (its commit, a MultiXact a FOR SHARE lock made).
    ours = {xid for _, _, xid, _, _, _, mine in parsed if mine and xid}
    records = size = fpi = 0
    kinds: collections.Counter[str] = collections.Counter()
    for rmgr, total, xid, desc, rest, rels, mine in parsed:
        if not mine and xid not in ours:
            continue
        records += 1
        size += total
        fpi += rest.count("FPW")
        rel = names.get(int(rels[0][1]), rels[0][1]) if rels else "-"
        kinds[f"{rmgr} {desc} {rel}"] += 1
    return records, size, fpi, dict(kinds)


async def measure(
    dsn: str,
    config: Config,
    kind: str,
    count: int,
    connections: int,
    chains: int,
) -> Result:
    import asyncpg

    from authserver.db import codes, families

    # From 0030 the live token is in its family's row, and the rotation updates that row.
    in_family = hasattr(families, "_ROTATE_POSTGRES")
    if kind == "rotation":
        statement = families._ROTATE_POSTGRES if in_family else families._SPEND_POSTGRES
        table = "refresh_families" if in_family else "refresh_tokens"
    else:
        statement, table = codes._EXCHANGE_POSTGRES, "authorization_codes"
    sql, binds = compiled(statement)
    conns = [
        await asyncpg.connect(dsn, server_settings=dict(config.settings))
        for _ in range(connections)
    ]
    watcher = await asyncpg.connect(dsn)
    try:
        users = [r[0] for r in await watcher.fetch("SELECT id FROM users ORDER BY id")]
        sessions = dict(
            (r[0], r[1]) for r in await watcher.fetch("SELECT user_id, id FROM login_sessions")
        )
        now = int(time.time())
        # Warm-up: the plans settle, and each family's token is one the statement inserted.
        warm = max(20, chains)
        per = count // connections + warm
        # Work for each connection: chains of tokens (rotation) or codes (exchange).
        heads: list[list[tuple[uuid.UUID, bytes]]] = []
        code_lists: list[list[str]] = []
        if kind == "rotation":
            rows, tokens = [], []
            for _ in range(connections):
                mine = []
                for _ in range(chains):
                    family, head = uuid.uuid4(), secrets.token_bytes(32)
                    rows.append((family, users[len(rows) % len(users)], now))
                    tokens.append((head, family, now))
                    mine.append((family, head))
                heads.append(mine)
            await watcher.executemany(
                "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at,"
                " expires_at) VALUES ($1, $2, 'app', 'profile', $3, 4000000000)",
                rows,
            )
            if in_family:
                await watcher.executemany(
                    "UPDATE refresh_families SET token_hash = $1, token_issued_at = $3,"
                    " token_expires_at = 4000000000 WHERE id = $2",
                    tokens,
                )
            else:
                await watcher.executemany(
                    "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at)"
                    " VALUES ($1, $2, $3, 4000000000)",
                    tokens,
                )
        else:
            records = []
            for i in range(connections):
                mine = []
                for j in range(per + 8):
                    user = users[(i + j * connections) % len(users)]
                    code = secrets.token_hex(32)
                    records.append(
                        (code, "web", user, sessions[user], REDIRECT, True, "challenge",
                         "openid profile", None, now, now, now + 3600, None, None, None)
                    )  # fmt: skip
                    mine.append(code)
                code_lists.append(mine)
            columns = [
                "code_hash", "client_id", "user_id", "login_session_id", "redirect_uri",
                "redirect_uri_given", "code_challenge", "scope", "nonce", "auth_time",
                "created_at", "expires_at", "amr", "resources", "dpop_jkt",
            ]  # fmt: skip
            await watcher.copy_records_to_table(
                "authorization_codes", records=records, columns=columns
            )

        def params(i: int, n: int) -> list[Any]:
            now = int(time.time())
            if kind == "rotation":
                chain = heads[i]
                (family_id, spent), successor = chain[n % chains], secrets.token_bytes(32)
                chain[n % chains] = (family_id, successor)
                values: dict[str, Any] = {
                    "token_hash": spent, "client_id": "app", "now": now,
                    "new_hash": successor, "new_expires_at": now + 30 * 86_400, "jkt": None,
                    "family_id": family_id,
                }  # fmt: skip
            else:
                family = str(uuid.uuid4())
                values = {
                    "now": now, "family_id": family, "code_hash": code_lists[i][n],
                    "client_id": "web", "redirect_uri": REDIRECT, "code_challenge": "challenge",
                    "proof_jkt": None, "family_expires_at": now + 30 * 86_400,
                    "token_hash": secrets.token_bytes(32), "token_expires_at": now + 86_400,
                    "audit_family": family, "dpop_jkt": None,
                }  # fmt: skip
            return [values[name] for name in binds]

        async def run(i: int, first: int, last: int) -> None:
            for n in range(first, last):
                row = await conns[i].fetchrow(sql, *params(i, n))
                assert row is not None, f"{kind} {n} on connection {i} matched nothing"

        await asyncio.gather(*(run(i, 0, warm) for i in range(connections)))
        await flush_stats(conns)
        pids = [conn.get_server_pid() for conn in conns]
        dboid = await watcher.fetchval(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        )
        names = {
            int(r[0]): r[1]
            for r in await watcher.fetch(
                "SELECT relfilenode, relname FROM pg_class WHERE relfilenode <> 0"
            )
        }
        upd0, hot0 = await stats(watcher, table)
        start = await watcher.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        cpu0 = sum(cpu_ticks(pid) for pid in pids)
        began, client0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(run(i, warm, per) for i in range(connections)))
        took, client1 = time.perf_counter() - began, time.process_time()
        cpu1 = sum(cpu_ticks(pid) for pid in pids)
        end = await watcher.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        await flush_stats(conns)
        upd1, hot1 = await stats(watcher, table)
        done = (per - warm) * connections
        records, size, fpi, kinds = waldump(start, end, dboid, names)
        plans = collections.Counter()
        for conn in conns:
            for r in await conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'WITH spent AS%'"
            ):
                plans["generic"] += r[0]
                plans["custom"] += r[1]
        # Planning and execution of single runs, each planned afresh.
        timings = []
        for n in range(per, per + 5):
            plan = await conns[0].fetch("EXPLAIN (ANALYZE, BUFFERS, WAL) " + sql, *params(0, n))
            text = "\n".join(r[0] for r in plan)
            planning = re.search(r"Planning Time: ([\d.]+)", text)
            execution = re.search(r"Execution Time: ([\d.]+)", text)
            timings.append((float(planning.group(1)), float(execution.group(1))))
        sizes = await watcher.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class AS c"
            " WHERE c.relname = $1 OR c.oid IN (SELECT indexrelid FROM pg_index"
            " WHERE indrelid = $1::regclass) ORDER BY 1",
            table,
        )
        planning = statistics.median(t[0] for t in timings) * 1000
        execution = statistics.median(t[1] for t in timings) * 1000
        plan_line = (
            f"prepared: {plans['custom']} custom, {plans['generic']} generic plans; single runs"
            f" under EXPLAIN ANALYZE: planning {planning:.0f} µs, execution {execution:.0f} µs"
            " (medians of 5)"
        )
        return Result(
            count=done,
            cpu_us=(cpu1 - cpu0) * 1e6 / TICK / done,
            client_us=(client1 - client0) * 1e6 / done,
            upd=upd1 - upd0,
            hot=hot1 - hot0,
            wal_records=records / done,
            wal_bytes=size / done,
            fpi=fpi / done,
            kinds={k: v / done for k, v in kinds.items()},
            plans=plan_line,
            sizes=", ".join(f"{r[0]} {r[1] / 1e6:.2f} MB" for r in sizes),
            rate=done / took,
        )
    finally:
        for conn in conns:
            await conn.close()
        await watcher.close()


def parse_configs(args: argparse.Namespace) -> list[Config]:
    settings_sets: list[dict[str, str]] = []
    for group in args.set or [""]:
        pairs = dict(item.split("=", 1) for item in group.split(",") if item)
        settings_sets.append(pairs)
    return [
        Config(int(ff), int(cff), settings, ddl)
        for ff in args.fillfactor.split(",")
        for cff in args.codes_fillfactor.split(",")
        for settings in settings_sets
        for ddl in args.ddl or [""]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=20_000)
    parser.add_argument("--exchanges", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument(
        "--chains",
        type=int,
        default=2,
        help="families per connection, spent in turn: 2 as the wrk pool (each token spent"
        " milliseconds after its insert, its page still filling); hundreds for tokens spent"
        " after their page filled, as a 15-minute access token's refresh finds them",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--fillfactor",
        default="100,90",
        help="fill factors of the table a rotation updates (refresh_families from 0030)",
    )
    parser.add_argument("--codes-fillfactor", default="100", help="authorization_codes' ones")
    parser.add_argument(
        "--set",
        action="append",
        help="session parameters of one configuration, comma-separated name=value (repeatable)",
    )
    parser.add_argument(
        "--ddl",
        action="append",
        help="SQL run after the migrations, one configuration each (repeatable; '' for none)",
    )
    parser.add_argument("--only", default="rotation,exchange")
    parser.add_argument("--kinds", action="store_true", help="print WAL records by kind")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    configs = parse_configs(args)
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for round_ in range(1, args.rounds + 1):
        for index, config in enumerate(configs):
            db = f"authserver_pgcost_{os.getpid()}_{index}"
            try:
                dsn = asyncio.run(prepare(db, config, args.users))
                for kind in args.only.split(","):
                    count = args.rotations if kind == "rotation" else args.exchanges
                    r = asyncio.run(
                        measure(dsn, config, kind, count, args.connections, args.chains)
                    )
                    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                    print(
                        f"round {round_} {kind:<8} [{config.name()}] {r.rate:,.0f}/s: postgres"
                        f" {r.cpu_us:.0f} µs CPU (client {r.client_us:.0f} µs); HOT {r.hot}/{r.upd}"
                        f" ({100 * r.hot / max(r.upd, 1):.0f} %); WAL {r.wal_records:.1f} records,"
                        f" {r.wal_bytes:,.0f} B, {r.fpi:.2f} FPI per {kind}; load {load}"
                    )
                    print(f"    {r.plans}")
                    print(f"    sizes after: {r.sizes}")
                    if args.kinds:
                        for name, n in sorted(r.kinds.items(), key=lambda kv: -kv[1]):
                            print(f"    {n:6.2f}  {name}")
            finally:
                asyncio.run(admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))


if __name__ == "__main__":
    main()
