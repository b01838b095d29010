"""What batching rotations into one statement and one commit would buy, without the HTTP server.

    .venv/bin/python bench/batched_spend.py [--database authserver_batched_spend]
        [--families 100000] [--sizes today,1,32] [--rounds 3] [--callers 64]
        [--connections 16] [--rotations 20000]

A probe, not a product change: authserver/ sends one statement (and one commit) per rotation.
Here `--callers` coroutines each rotate families of their own, in turn, and hand every spend to
a dispatcher that works as a server's worker could: the spends submitted within one event-loop
tick, and those that queued while every connection was busy, leave together, at most `size`
rows per statement, ordered by family id, as ONE statement in ONE transaction (autocommit):
db/families.py's `_ROTATE_CTES` (storage v2, migration 0030: the UPDATE of the family's row by
its primary key, the replaced parent INSERTed into spent_refresh_tokens) rewritten for many
rows (`batched_sql` below: the same WHERE conditions, the same INSERT, the rows fed by `unnest`
of arrays WITH ORDINALITY so each returned row names its caller). `today` is the server's own
statement for a token that names its family (`_ROTATE_POSTGRES`), one per rotation, through
the same dispatcher. (`_SPEND_CTES`, for tokens from before 0030, is not measured here.)

Against `--database` (migrated to head here; `--families` live families preloaded once with
bench/scale.py's `preload`, in 0030's shape: live token and spent parent in the family's row;
each run spending families no earlier run touched). Per run:
rotations/s; Postgres CPU µs per rotation (utime + stime of the connections' backends from
/proc, as bench/pg_cost.py); this process's CPU µs per rotation (the dispatcher, asyncpg's
encoding and decoding, and the callers' own few µs); commits/s (pg_stat_database.xact_commit);
WAL flushes (pg_stat_wal.wal_sync, the whole cluster's); rows per statement actually sent;
latency per rotation (submit to answer) and the part of it spent waiting for a connection.
Then the run is checked: every call answered, each family's live token the last successor its
caller was handed (one live token, no double successor), each rotation one spent token and
none spent twice, and the run's spent tokens sent again in batches match nothing and change
nothing.

`--checks` (once, before the runs) probes what a product would have to get right: the same
token twice in one batch, the same families in two concurrent batches (sorted, and in opposite
orders: deadlocks counted), and failure isolation (one row that makes the statement fail, the
whole batch rolled back, then each row alone).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import secrets
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "postgresql://postgres@127.0.0.1:5432"
TICK = os.sysconf("SC_CLK_TCK")
FAR = 4_000_000_000
TTL = 30 * 86_400


def batched_sql() -> str:
    """`_ROTATE_CTES` for many rows: each `:param` of one rotation becomes a column of `batch`."""
    from authserver.db.families import _ROTATE_CTES

    sql = _ROTATE_CTES.format(proved="")
    # (text, its replacement, how many times the product's statement holds it)
    for old, new, times in [
        ("SET token_hash = :new_hash,", "SET token_hash = i.new_hash,", 1),
        ("LEAST(:new_expires_at,", "LEAST(i.new_expires_at,", 1),
        ("CAST(:jkt AS VARCHAR)", "i.jkt", 1),
        (":token_hash", "i.token_hash", 1),
        (":client_id", "i.client_id", 1),
        ("FROM users AS u, clients AS c,", "FROM batch AS i, users AS u, clients AS c,", 1),
        # The parent each row replaces, read per row: a subquery naming `i` is LATERAL.
        ("(SELECT parent_hash, parent_spent_at", "LATERAL (SELECT parent_hash, parent_spent_at", 1),
        (":family_id", "i.family_id", 2),
        ("RETURNING ", "RETURNING i.ord, i.token_hash AS spent_hash, ", 1),
    ]:  # fmt: skip
        found = sql.count(old)
        assert found == times, f"_ROTATE_CTES changed: {old!r} found {found} times, not {times}"
        sql = sql.replace(old, new)
    sql = sql.replace(":now", "$7")
    assert ":" not in sql.replace("::", ""), sql  # every parameter accounted for
    columns = "family_id, token_hash, client_id, new_hash, new_expires_at, jkt, ord"
    return (
        "WITH batch AS (\n    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::varchar[],"
        f" $4::bytea[], $5::bigint[], $6::varchar[])\n    WITH ORDINALITY AS b({columns})\n),"
        f" {sql}\nSELECT * FROM spent"
    )


def today_sql() -> tuple[str, list[str]]:
    """The server's statement for a token that names its family, as db/direct.py hands it to
    asyncpg."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    from authserver.db.families import _ROTATE_POSTGRES

    done = _ROTATE_POSTGRES.compile(dialect=PGDialect_asyncpg())
    return done.string, list(done.positiontup or ())


async def ensure_database(name: str) -> None:
    """A scratch database of this script's own: its tables are truncated by every preload."""
    import asyncpg

    conn = await asyncpg.connect(f"{HOST}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Spend:
    family_id: str
    token_hash: bytes
    client_id: str
    new_hash: bytes
    new_expires_at: int
    jkt: str | None
    submitted: float = 0.0
    sent: float = 0.0
    future: asyncio.Future[Any] | None = None


@dataclass
class Counters:
    statements: int = 0
    rows: int = 0
    failed_batches: int = 0
    waits: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class Dispatcher:
    """Spends gathered per loop tick (and while every connection is busy), sent `size` at most
    per statement. size 0: the server's own one-row statement, one per spend."""

    def __init__(self, conns: list[Any], size: int, now: int) -> None:
        self.idle = list(conns)
        self.size = size
        self.now = now
        self.pending: collections.deque[Spend] = collections.deque()
        self.scheduled = False
        self.counters = Counters()
        self.batch = batched_sql()
        self.single, self.binds = today_sql()

    def submit(self, spend: Spend) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        spend.future = loop.create_future()
        spend.submitted = time.perf_counter()
        self.pending.append(spend)
        if not self.scheduled:  # one flush per tick, after every caller of this tick ran
            self.scheduled = True
            loop.call_soon(self.flush)
        return spend.future

    def flush(self) -> None:
        self.scheduled = False
        while self.idle and self.pending:
            take = min(max(self.size, 1), len(self.pending))
            items = [self.pending.popleft() for _ in range(take)]
            asyncio.get_running_loop().create_task(self.send(self.idle.pop(), items))

    async def send(self, conn: Any, items: list[Spend]) -> None:
        import asyncpg

        sent = time.perf_counter()
        for s in items:
            s.sent = sent
        answers: list[Any]
        try:
            answers = await self.run(conn, items)
        except Exception as exc:
            self.counters.failed_batches += 1
            answers = [exc] * len(items)
            # Postgres refused the statement (or asyncpg could not encode a row): the whole
            # batch rolled back, so each row alone is safe to try. A lost connection is not:
            # the batch may have committed, and its rows sent again would look like reuse.
            refused = isinstance(exc, (asyncpg.PostgresError, asyncpg.DataError))
            if refused and len(items) > 1:
                answers = []
                for s in items:
                    try:
                        answers.extend(await self.run(conn, [s]))
                    except Exception as alone:
                        answers.append(alone)
        self.counters.statements += 1
        self.counters.rows += len(items)
        self.idle.append(conn)
        done = time.perf_counter()
        for s, answer in zip(items, answers, strict=True):
            self.counters.waits.append(s.sent - s.submitted)
            self.counters.latencies.append(done - s.submitted)
            assert s.future is not None
            if isinstance(answer, BaseException):
                s.future.set_exception(answer)
            else:
                s.future.set_result(answer)
        if self.pending and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    async def run(self, conn: Any, items: list[Spend]) -> list[Any]:
        """One statement; an answer (row or None) per item, in the items' order."""
        if self.size == 0:
            (s,) = items
            values = {
                "family_id": s.family_id, "token_hash": s.token_hash,
                "client_id": s.client_id, "now": self.now,
                "new_hash": s.new_hash, "new_expires_at": s.new_expires_at, "jkt": s.jkt,
            }  # fmt: skip
            return [await conn.fetchrow(self.single, *(values[b] for b in self.binds))]
        return await spend_batch(conn, self.batch, items, self.now)


async def spend_batch(conn: Any, sql: str, items: list[Spend], now: int) -> list[Any]:
    """One multi-row statement, its rows ordered by family id (every batch locks the families'
    rows it rotates in the same order, so two batches sharing families wait rather than
    deadlock)."""
    order = sorted(range(len(items)), key=lambda k: (items[k].family_id, items[k].token_hash))
    rows = await conn.fetch(
        sql,
        [items[k].family_id for k in order],
        [items[k].token_hash for k in order],
        [items[k].client_id for k in order],
        [items[k].new_hash for k in order],
        [items[k].new_expires_at for k in order],
        [items[k].jkt for k in order],
        now,
    )
    answers: list[Any] = [None] * len(items)
    for row in rows:
        answers[order[row["ord"] - 1]] = row
    return answers


async def setup(dsn: str, families: int) -> None:
    """Migrated to head; a user `bench`, a client `app`, and `families` live families."""
    import asyncpg
    from scale import preload  # bench/ is on sys.path: this file runs as a script
    from sqlalchemy.ext.asyncio import create_async_engine

    from authserver.db import migrate

    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    await migrate.upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE refresh_families, refresh_tokens, spent_refresh_tokens, users, clients"
            " CASCADE"
        )
        await conn.execute(
            "INSERT INTO users (id, username, username_key, password_hash, scopes, disabled,"
            " created_at) VALUES (gen_random_uuid()::text, 'bench', 'bench', 'x', 'profile',"
            " false, 0)"
        )
        await conn.execute(
            "INSERT INTO clients (client_id, grant_types, scopes, refresh_delivery, created_at,"
            " redirect_uris) VALUES ('app', 'password refresh_token', 'profile', 'body', 0, '')"
        )
    finally:
        await conn.close()
    took = await preload(dsn, families, "b", int(time.time()), FAR)
    print(f"preloaded {families:,} live families in {took:.1f} s")


class Families:
    """Hands out live families no earlier run touched: (family id, live token hash)."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.next = 0

    @classmethod
    async def load(cls, conn: Any, part: int, parts: int) -> Families:
        rows = await conn.fetch(
            "SELECT id::text, token_hash FROM refresh_families WHERE token_hash IS NOT NULL"
            " ORDER BY id"
        )
        return cls([(r[0], bytes(r[1])) for r in rows][part::parts])

    def take(self, n: int) -> list[tuple[str, bytes]]:
        if self.next + n > len(self.rows):
            raise SystemExit(f"out of fresh families: raise --families above {len(self.rows):,}")
        taken = self.rows[self.next : self.next + n]
        self.next += n
        return taken


def burn(seconds: float) -> None:
    """CPU time spent in this thread, as a worker's Python around the statement would."""
    if seconds:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass


def spend_of(family_id: str, token: bytes, now: int) -> Spend:
    return Spend(family_id, token, "app", secrets.token_bytes(32), now + TTL, None)


async def spent_tokens(conn: Any, families: list[str]) -> list[bytes]:
    """The families' spent tokens (0030): in spent_refresh_tokens, and the one spent last, in
    the family's row (the live token's parent)."""
    rows = await conn.fetch(
        "SELECT token_hash FROM spent_refresh_tokens WHERE family_id = ANY($1::uuid[])"
        " UNION ALL SELECT parent_hash FROM refresh_families WHERE id = ANY($1::uuid[])"
        " AND parent_hash IS NOT NULL",
        families,
    )
    return sorted(bytes(r[0]) for r in rows)


async def live_tokens(conn: Any, families: list[str], lives: list[bytes]) -> int:
    """How many of `families` hold as live token the one `lives` names for them."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM refresh_families AS f JOIN unnest($1::uuid[], $2::bytea[])"
            " AS h(id, live) ON f.id = h.id WHERE f.token_hash = h.live",
            families,
            lives,
        )
    )


async def measure(dsn: str, pool: Families, size: int, args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    conns = [await asyncpg.connect(dsn) for _ in range(args.connections)]
    watcher = await asyncpg.connect(dsn)
    try:
        now = int(time.time())
        dispatcher = Dispatcher(conns, size, now)
        chains = [pool.take(args.chains) for _ in range(args.callers)]
        families = [f for chain in chains for f, _ in chain]
        heads = [[t for _, t in chain] for chain in chains]
        per = args.rotations // args.callers
        spent_before = len(await spent_tokens(watcher, families))
        spent_in_run: list[tuple[str, bytes]] = []

        before_us, after_us = (float(x) / 1e6 for x in args.work_us.split(","))

        async def caller(i: int, first: int, last: int) -> None:
            for n in range(first, last):
                k = n % args.chains
                burn(before_us)  # the request's Python before its statement
                family = chains[i][k][0]
                spend = spend_of(family, heads[i][k], now)
                row = await dispatcher.submit(spend)
                burn(after_us)  # ... and after it
                assert row is not None, f"caller {i} rotation {n} matched nothing"
                assert str(row["id"]) == family, "a row answered the wrong caller"
                spent_in_run.append((family, heads[i][k]))
                heads[i][k] = spend.new_hash

        await asyncio.gather(*(caller(i, 0, args.warm) for i in range(args.callers)))
        dispatcher.counters = Counters()
        spent_in_run.clear()
        for conn in conns:
            await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(0.3)
        pids = [conn.get_server_pid() for conn in conns]
        await watcher.execute("SELECT pg_stat_clear_snapshot()")
        commits0 = await watcher.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        syncs0 = await watcher.fetchval("SELECT wal_sync FROM pg_stat_wal")
        load0 = load()
        pg0 = sum(cpu_ticks(pid) for pid in pids)
        me0 = own_cpu()
        began = time.perf_counter()
        await asyncio.gather(*(caller(i, args.warm, args.warm + per) for i in range(args.callers)))
        took = time.perf_counter() - began
        me1 = own_cpu()
        pg1 = sum(cpu_ticks(pid) for pid in pids)
        for conn in conns:
            await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(0.3)
        await watcher.execute("SELECT pg_stat_clear_snapshot()")
        syncs1 = await watcher.fetchval("SELECT wal_sync FROM pg_stat_wal")
        commits1 = await watcher.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        done = per * args.callers
        c = dispatcher.counters
        result = {
            "rate": done / took,
            "pg_us": (pg1 - pg0) * 1e6 / TICK / done,
            "client_us": (me1 - me0) * 1e6 / done,
            # The watcher's and the flushes' own few transactions are in there too.
            "commits_s": (commits1 - commits0) / took,
            "statements_s": c.statements / took,
            "syncs_s": (syncs1 - syncs0) / took,
            "rows": c.rows / max(c.statements, 1),
            "p50": statistics.median(c.latencies) * 1e3,
            "p99": statistics.quantiles(c.latencies, n=100)[98] * 1e3,
            "wait": statistics.mean(c.waits) * 1e3,
            "failed": c.failed_batches,
            "load": f"{load0} -> {load()}",
        }
        # Correctness: each family's live token the last successor its caller was handed (so one
        # live token each, no double successor); each rotation one token spent, none twice,
        # each token this run spent among them; and every token spent in this run, sent again
        # in batches, matches nothing and changes nothing.
        rotations = (args.warm + per) * args.callers
        lives = [t for chain in heads for t in chain]

        async def state() -> tuple[int, list[bytes]]:
            return await live_tokens(watcher, families, lives), await spent_tokens(
                watcher, families
            )

        live, spent = await state()
        assert live == len(families), (live, len(families))
        assert len(spent) == spent_before + rotations, (len(spent), spent_before, rotations)
        assert len(set(spent)) == len(spent), "a token spent twice"
        assert {t for _, t in spent_in_run} <= set(spent), "a token of this run not spent"
        replayed: list[bytes] = []
        matched = 0
        width = max(size, 1)
        sql = batched_sql()
        for start in range(0, min(len(spent_in_run), 64 * width), width):
            chunk = [spend_of(f, t, now) for f, t in spent_in_run[start : start + width]]
            replayed.extend(s.token_hash for s in chunk)
            matched += sum(a is not None for a in await spend_batch(conns[0], sql, chunk, now))
        assert matched == 0 and await state() == (live, spent), (matched, len(replayed))
        result["check"] = (
            f"ok: {len(families)} families each 1 live token (the last handed out),"
            f" {rotations:,} spent, none twice; {len(replayed)} spent tokens replayed in"
            f" batches of {width}: 0 matched, nothing changed"
        )
        return result
    finally:
        for conn in conns:
            await conn.close()
        await watcher.close()


async def checks(dsn: str, pool: Families) -> None:
    """What a product would have to get right, probed once."""
    import asyncpg

    sql = batched_sql()
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        now = int(time.time())
        # The same token twice in one batch: one row spends it, one successor; the other row
        # matches nothing (as the loser of a race between two requests does today: an UPDATE
        # ... FROM updates a row once however many of its join rows match).
        (f1, t1), (f2, t2) = pool.take(2)
        twice = [spend_of(f1, t1, now), spend_of(f1, t1, now), spend_of(f2, t2, now)]
        answers = await spend_batch(a, sql, twice, now)
        successors = [s.new_hash for s in twice]
        rotated = await a.fetchval(
            "SELECT count(*) FROM refresh_families WHERE parent_hash = ANY($1::bytea[])"
            " AND token_hash = ANY($2::bytea[])",
            [t1, t2],
            successors,
        )
        print(
            f"check: token twice in one batch: {sum(x is not None for x in answers)} of 3 rows"
            f" answered, {rotated} families rotated once, to a successor of the batch"
            " (expected 2 and 2)"
        )
        # The same 16 tokens in two concurrent batches, 30 times: sorted (as spend_batch does)
        # and in opposite orders (a statement whose rows were not sorted).
        for label, reverse in (("sorted", False), ("opposite orders", True)):
            deadlocks = won = 0
            for _ in range(30):
                taken = pool.take(16)
                tokens = [t for _, t in taken]
                first = [spend_of(f, t, now) for f, t in sorted(taken)]
                second = [spend_of(f, t, now) for f, t in sorted(taken, reverse=reverse)]

                async def unsorted(conn: Any, items: list[Spend]) -> list[Any]:
                    rows = await conn.fetch(
                        sql, [s.family_id for s in items],
                        [s.token_hash for s in items], [s.client_id for s in items],
                        [s.new_hash for s in items], [s.new_expires_at for s in items],
                        [s.jkt for s in items], now,
                    )  # fmt: skip
                    return list(rows)

                results = await asyncio.gather(
                    unsorted(a, first), unsorted(b, second), return_exceptions=True
                )
                for r in results:
                    if isinstance(r, asyncpg.DeadlockDetectedError):
                        deadlocks += 1
                    elif isinstance(r, BaseException):
                        raise r
                    else:
                        won += len(r)
                # Each token spent exactly once, whoever won: its family's parent now, and one
                # successor of the two batches' live in each family.
                news = [s.new_hash for s in first + second]
                live = await a.fetchval(
                    "SELECT count(*) FROM refresh_families WHERE parent_hash = ANY($1::bytea[])"
                    " AND token_hash = ANY($2::bytea[])",
                    tokens,
                    news,
                )
                assert live == 16, live
            print(
                f"check: 16 shared tokens in 2 concurrent batches x30, {label}: {deadlocks}"
                f" deadlocks, {won} rows answered (each token spent once: checked)"
            )
        # Failure isolation: which row can fail the statement? The parameters are the server's
        # own (hashes, a client id that authenticated, its clock), so a row's input cannot; a
        # text with a NUL byte (what a client id could hold were it not checked first) shows
        # what one bad row does: the whole statement fails, every row rolled back.
        items = [spend_of(f, t, now) for f, t in pool.take(4)]
        items[2].client_id = "app\x00"
        dispatcher = Dispatcher([a], 4, now)
        answers = await asyncio.gather(
            *(dispatcher.submit(s) for s in items), return_exceptions=True
        )
        said = [
            type(x).__name__ if isinstance(x, BaseException) else x is not None for x in answers
        ]
        print(
            f"check: a NUL byte in one row of 4 (one tick, one statement):"
            f" {dispatcher.counters.failed_batches} batch failed and was retried row by row;"
            f" answers {said}"
        )
        # A row of another client, a token its family does not hold, a family no one has: no
        # error, no row, others unaffected.
        (f5, _t5), (f6, _t6) = pool.take(2)
        items = [spend_of(f, t, now) for f, t in pool.take(3)]
        items += [spend_of(f5, b"\0" * 32, now), spend_of(str(uuid.uuid4()), _t6, now)]
        items[0].client_id = "other"
        answers = await spend_batch(a, sql, items, now)
        print(
            "check: a wrong client's row, a token its family does not hold and an unknown"
            f" family in a batch of 5: answered {[x is not None for x in answers]}"
            " (expected [False, True, True, False, False])"
        )
        plan = await a.fetch(
            "EXPLAIN (COSTS OFF) " + sql,
            [str(uuid.uuid4()) for _ in range(32)],
            [secrets.token_bytes(32) for _ in range(32)], ["app"] * 32,
            [secrets.token_bytes(32) for _ in range(32)], [now] * 32, [None] * 32, now,
        )  # fmt: skip
        print("plan of a 32-row batch (custom):")
        for r in plan:
            print(f"    {r[0]}")
    finally:
        await a.close()
        await b.close()


def sizes_of(text: str) -> list[int]:
    return [0 if s == "today" else int(s) for s in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database",
        default="authserver_batched_spend",
        help="made if missing; its tables are emptied",
    )
    parser.add_argument("--families", type=int, default=100_000)
    parser.add_argument("--no-preload", action="store_true", help="reuse the preloaded rows")
    parser.add_argument(
        "--sizes", default="today,1,2,4,8,16,32", help="rows per statement at most, in order"
    )
    parser.add_argument("--rounds", type=int, default=1, help="the list of sizes, repeated")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--chains", type=int, default=2, help="families per caller, in turn")
    parser.add_argument("--rotations", type=int, default=20_000, help="per run, measured")
    parser.add_argument("--warm", type=int, default=10, help="rotations per caller first")
    parser.add_argument(
        "--work-us",
        default="0,0",
        help="CPU µs each caller burns before submitting and after its answer (e.g. 250,250"
        " for a worker's request around the statement; 0,0 measures the statement alone)",
    )
    parser.add_argument("--checks", action="store_true")
    parser.add_argument(
        "--part",
        default="0/1",
        help="j/n: this process spends only every n-th family from the j-th, so n processes"
        " started together (each with --no-preload) play n workers",
    )
    args = parser.parse_args()
    part, parts = (int(x) for x in args.part.split("/"))
    sys.path.insert(0, str(ROOT))
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    dsn = f"{HOST}/{args.database}"
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {loop_name}")
    print(f"load average at start: {load()}")
    asyncio.run(ensure_database(args.database))
    if not args.no_preload:
        asyncio.run(setup(dsn, args.families))

    async def families() -> Families:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            return await Families.load(conn, part, parts)
        finally:
            await conn.close()

    pool = asyncio.run(families())
    if args.checks:
        asyncio.run(checks(dsn, pool))
    print(
        "size   rotations/s  pg µs/rot  client µs/rot  commits/s  stmts/s  wal flushes/s"
        "  rows/stmt  p50 ms  p99 ms  queue ms  failed  load"
    )
    for _ in range(args.rounds):
        for size in sizes_of(args.sizes):
            r = asyncio.run(measure(dsn, pool, size, args))
            label = "today" if size == 0 else str(size)
            print(
                f"{label:>5}  {r['rate']:11,.0f}  {r['pg_us']:9.0f}  {r['client_us']:13.0f}"
                f"  {r['commits_s']:9,.0f}  {r['statements_s']:7,.0f}  {r['syncs_s']:13,.0f}"
                f"  {r['rows']:9.1f}  {r['p50']:6.1f}  {r['p99']:6.1f}  {r['wait']:8.2f}"
                f"  {r['failed']:6}  {r['load']}"
            )
            print(f"       {r['check']}")


if __name__ == "__main__":
    main()
