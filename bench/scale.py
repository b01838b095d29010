"""Refresh storage as the tables grow: bytes per family, and whether the hot paths stay flat.

    .venv/bin/python bench/scale.py [--families 1000000] [--duration 15] [--connections 64]
                                    [--threads 2] [--workers 2] [--revision REV --sizes-only]
                                    [--users 500000 --spread-days 30]

Needs what bench/http_bench.py needs (Postgres on 127.0.0.1:5432, `wrk`) and reuses its
machinery: a fresh database, `authserver migrate`, a user and clients made with the CLI,
`authserver serve --workers N`, wrk with its rotation script. Then:

1. on the empty database: refresh rotation (a pool of 128 families, each wrk connection
   spending its current token and taking the successor from the answer) and introspection of
   an access token that has a `sid` (so every request asks refresh_families);
2. preloads N live families with set-based SQL (generate_series, gen_random_uuid, sha256 of
   a counter), each a spent parent and a live child valid until far in the future, as a
   rotated session leaves them; prints each table's and each index's size and the MB per
   million families, and EXPLAIN of every statement on those tables;
3. the same two loads on the loaded database (a fresh pool of 128 families);
4. N more families, expired long ago, and rotation while `authserver purge` deletes them,
   against rotation alone just before: the p99 of both, and how long the purge took.

`--revision 0007 --sizes-only` migrates only that far and preloads in that schema's format
(hex text hashes, string ids), for the sizes before a storage change; no server runs then.
With `--upgrade` it then migrates those rows to head, timed, and prints the sizes again.
At the end the server is stopped and the database dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from http_bench import (  # bench/ is on sys.path: this file runs as a script
    AUTHSERVER,
    ROOT,
    ROTATE,
    Measurement,
    Stack,
    db_exec,
    ensure_speedups,
    http,
    machine,
    wrk,
)

POOL = 128  # families in each rotation pool: twice the default connections
FAR = 4_000_000_000  # valid until 2096
CHUNK = 100_000  # families per preloading statement
DAY = 86_400

# One statement per chunk: the families, then for each a spent parent and its live child.
# {hash} turns a text into what the schema stores (bytes, or the hex of older schemas);
# {fid} turns gen_random_uuid() into the id column's type. Each family's user is one of
# $5 users (`users`: their ids as `user_id` computes them), and its end is spread over the
# 30 days after $2 (with $5 = 1 and spread 0: every family the same user and end, as before).
USER_ID = "md5('bench-user:' || (({n} * 7919) % $5::integer))::uuid::text"
ENDS = "($2::bigint + (hashtext($4::text || {n}) & 2147483647) % ($6::bigint + 1))"
PRELOAD = """
WITH f AS (
    INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at)
    SELECT {fid}, {user_id}, 'app', 'profile', $1::bigint, {ends}
    FROM generate_series(1, $3::integer) AS g
    RETURNING id
), n AS (SELECT id, $4::text || ':' || row_number() OVER () AS tag FROM f)
INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at, spent_at)
SELECT {parent}, id, NULL, $1::bigint, $2::bigint, $1::bigint FROM n
UNION ALL
SELECT {child}, id, {parent}, $1::bigint, $2::bigint, NULL FROM n
"""
# From 0030: the live child and its spent parent both in the family's row (the token spent
# last stays there; older ones go to spent_refresh_tokens as later rotations replace them).
PRELOAD_0030 = """
INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at,
                              token_hash, parent_hash, parent_spent_at, token_issued_at,
                              token_expires_at)
SELECT gen_random_uuid(), {user_id}, 'app', 'profile', $1::bigint, {ends},
       {child}, {parent}, $1::bigint, $1::bigint, $2::bigint
FROM generate_series(1, $3::integer) AS g
"""
# The users the families belong to: ids as USER_ID computes them.
USERS = """
INSERT INTO users (id, username, password_hash, scopes, disabled, created_at)
SELECT md5('bench-user:' || k)::uuid::text, 'bench-' || k, 'x', 'profile', false, 0
FROM generate_series(0, $1::integer - 1) AS k
ON CONFLICT DO NOTHING
"""

SIZES = """
SELECT c.relname, pg_relation_size(c.oid), pg_total_relation_size(c.oid),
       coalesce(s.n_live_tup, 0)
FROM pg_class AS c LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.relname = ANY($1) ORDER BY c.relname
"""
INDEXES = """
SELECT indexrelname, relname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes
WHERE relname = ANY($1) ORDER BY relname, indexrelname
"""
TABLES = ["refresh_families", "refresh_tokens", "spent_refresh_tokens"]


def preload_sql(stored_as_bytes: bool, family_rows: bool) -> str:
    if stored_as_bytes:
        hashed = "sha256(convert_to({}, 'UTF8'))"
        fid = "gen_random_uuid()"
    else:
        hashed = "encode(sha256(convert_to({}, 'UTF8')), 'hex')"
        fid = "gen_random_uuid()::text"
    if family_rows:  # the tag is the series' number: no CTE numbers the rows first
        tag = "$5::text || ':' || g"
        return PRELOAD_0030.format(
            user_id=USER_ID.format(n="g"),
            ends=ENDS.format(n="g"),
            parent=hashed.format(f"'p:' || {tag}"),
            child=hashed.format(f"'c:' || {tag}"),
        )
    return PRELOAD.format(
        fid=fid,
        user_id=USER_ID.format(n="g"),
        ends=ENDS.format(n="g"),
        parent=hashed.format("'p:' || tag"),
        child=hashed.format("'c:' || tag"),
    )


async def preload(
    dsn: str,
    families: int,
    tag: str,
    created: int,
    expires: int,
    users: int = 1,
    spread: int = 0,
) -> float:
    """Inserts `families` families for the client `app`, among `users` users (made here), their
    ends spread over `spread` seconds after `expires`; seconds taken."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(USERS, users)
        kind = await conn.fetchval(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'refresh_tokens' AND column_name = 'token_hash'"
        )
        family_rows = await conn.fetchval("SELECT to_regclass('spent_refresh_tokens') IS NOT NULL")
        sql = preload_sql(kind == "bytea", family_rows)
        began = time.perf_counter()
        done = 0
        while done < families:
            n = min(CHUNK, families - done)
            await conn.execute(sql, created, expires, n, f"{tag}{done}", users, spread)
            done += n
        for table in TABLES:
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                await conn.execute(f"ANALYZE {table}")
        return time.perf_counter() - began
    finally:
        await conn.close()


async def sizes(dsn: str) -> tuple[list[tuple[str, int, int, int]], list[tuple[str, str, int]]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        tables = [tuple(r) for r in await conn.fetch(SIZES, TABLES)]
        indexes = [tuple(r) for r in await conn.fetch(INDEXES, TABLES)]
        return tables, indexes  # type: ignore[return-value]
    finally:
        await conn.close()


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def print_sizes(dsn: str, families: int, before: int) -> None:
    tables, indexes = asyncio.run(sizes(dsn))
    total = 0
    for name, heap, whole, rows in tables:
        total += whole
        print(f"  {name:<40} {mb(whole):>12} total, heap {mb(heap)}, ~{rows:,} rows")
    for name, table, size in indexes:
        print(f"    index {name:<38} {mb(size):>12}  ({table})")
    grown = total - before
    print(
        f"  both tables: {mb(total)}; grown by {mb(grown)} for {families:,} families: "
        f"{grown / families * 1e6 / 1e6:,.0f} MB per million families"
    )


async def total_size(dsn: str) -> int:
    tables, _ = await sizes(dsn)
    return sum(whole for _, _, whole, _ in tables)


# --- EXPLAIN of the statements on the two tables ---------------------------------------------


def statements() -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, statement, sample parameters) of every statement on the refresh tables."""
    from authserver.db import codes, denylist, families, login_sessions, purge

    now = int(time.time())
    some = "00000000-0000-4000-8000-000000000000"
    h = hashlib.sha256(b"c:x").digest()
    spend = {"token_hash": h, "client_id": "app", "now": now, "new_hash": h, "new_expires_at": FAR}
    return [
        ("rotate (CTE)", families._ROTATE_POSTGRES, {**spend, "family_id": some}),
        ("rotate a token from before 0030 (CTE)", families._SPEND_POSTGRES, spend),
        ("grace: the family's row, locked", families._LOCK_LIVE, {"family_id": some}),
        (
            "grace: replace the child",
            families._ROTATE_CHILD,
            {**spend, "family_id": some, "child_hash": h, "parent_hash": h},
        ),
        ("find a token", families._FIND_IN_FAMILY, {"token_hash": h, "family_id": some}),
        ("find a token from before 0030", families._FIND, {"token_hash": h}),
        ("a family by id", families._FAMILY_BY_ID, {"id": some}),
        ("a user's sessions", families._SESSIONS, {"user_id": some, "now": now}),
        (
            "introspection: access token revoked?",
            denylist._ACCESS_REVOKED_IN_SESSION,
            {"jti": "j", "kid": "k", "client_id": "app", "iat": now, "sid": some, "now": now},
        ),
        (
            "end-session: its families",
            login_sessions._END_FAMILIES,
            {"login_session_id": some, "now": now},
        ),
        ("purge: dead families", purge._DEAD_FAMILIES, {"cutoff": now - DAY, "batch": 1000}),
        ("purge: their tokens", purge._TOKENS, {"ids": [uuid.UUID(some)]}),
        ("purge: their spent tokens", purge._SPENT_TOKENS, {"ids": [uuid.UUID(some)]}),
        ("code replay: find the code", codes._FIND, {"h": "c" * 64}),
    ]


def names(compiled: Any) -> list[str]:
    return list(compiled.positiontup or ())


async def explain(dsn: str) -> None:
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
    conn = await asyncpg.connect(dsn)
    rows = statements()
    # As db/denylist.recent_revocations has SQLAlchemy write it.
    feed = text("SELECT id FROM refresh_families WHERE revoked_at >= :since")
    rows.append(("revocation feed: revoked families", feed, {"since": int(time.time()) - 600}))
    try:
        for name, statement, params in rows:
            # Values bound only where the list decides the SQL (IN ...): others stay untyped
            # $n parameters, as when the server runs the statement.
            expanding = {b.key for b in statement._bindparams.values() if b.expanding}
            if expanding:
                statement = statement.bindparams(**{key: params[key] for key in expanding})
            compiled = statement.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            args = [params[n] if n in params else compiled.params[n] for n in names(compiled)]
            # The statement is planned, not run (a data-modifying CTE included).
            plan = await conn.fetch("EXPLAIN " + str(compiled), *args)
            print(f"  -- {name}")
            for line in plan:
                print(f"     {line[0]}")
    finally:
        await conn.close()


# --- loads -----------------------------------------------------------------------------------


async def rotation_pool(dsn: str, count: int) -> list[str]:
    """`count` fresh families of one live token each, for the rotation script; their tokens
    (naming their families, in the families' rows, as the server issues them since 0030)."""
    import asyncpg

    from authserver.tokens.refresh import refresh_token

    now = int(time.time())
    ids = [str(uuid.uuid4()) for _ in range(count)]
    tokens = [refresh_token(family, secrets.token_urlsafe(32)) for family in ids]
    conn = await asyncpg.connect(dsn)
    try:
        user = await conn.fetchval("SELECT id FROM users WHERE username = 'bench'")
        await conn.executemany(
            "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at,"
            " token_hash, token_issued_at, token_expires_at)"
            " VALUES ($1, $2, 'app', 'profile', $3, $4, $5, $3, $4)",
            [
                (family, user, now, FAR, hashlib.sha256(t.encode()).digest())
                for t, family in zip(tokens, ids, strict=True)
            ],
        )
    finally:
        await conn.close()
    return tokens


def rotate(stack: Stack, args: argparse.Namespace, name: str) -> Measurement:
    tokens = asyncio.run(rotation_pool(stack.dsn, POOL))
    path = stack.workdir / f"pool-{name}.txt"
    path.write_text("\n".join(tokens) + "\n")
    script = stack.script("rotate", ROTATE)
    prefix = "grant_type=refresh_token&client_id=app&refresh_token="
    extra = [str(path), str(args.threads), "/token", prefix]
    return wrk(f"{stack.base}/token", script, args, script_args=extra)


def introspect(stack: Stack, args: argparse.Namespace) -> Measurement:
    answer = json.loads(http("POST", f"{stack.base}/token", stack.login_body()))
    script = stack.post_script("introspect", f"token={answer['access_token']}", basic=True)
    return wrk(f"{stack.base}/introspect", script, args)


def line(name: str, m: Measurement, against: Measurement | None = None) -> str:
    ratio = f"  {m.rps / against.rps:.2f}x" if against else ""
    return (
        f"  {name:<44} {m.rps:>8,.0f} rps  p50 {m.p50_ms:>6.2f} ms  p99 {m.p99_ms:>7.2f} ms"
        f"  non-2xx/errors {m.errors}{ratio}"
    )


def rotate_while_purging(stack: Stack, args: argparse.Namespace) -> tuple[Measurement, str]:
    """Rotation under wrk while `authserver purge` runs, started a second into it."""
    outcome: list[str] = []

    def run_purge() -> None:
        time.sleep(1)
        began = time.perf_counter()
        done = subprocess.run(
            [AUTHSERVER, "purge"], env=stack.env, capture_output=True, text=True, check=False
        )
        said = (done.stdout + done.stderr).strip().splitlines()
        outcome.append(
            f"purge took {time.perf_counter() - began:.1f} s, exit {done.returncode}: "
            + (said[-1] if said else "(nothing printed)")
        )

    purger = threading.Thread(target=run_purge)
    purger.start()
    measured = rotate(stack, args, "purge")
    purger.join()
    return measured, outcome[0]


# --- sizes only, on an older schema ----------------------------------------------------------


def sizes_only(args: argparse.Namespace) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from authserver.db import migrate

    db = f"authserver_scale_{os.getpid()}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
    db_exec(f"CREATE DATABASE {db}")
    try:

        async def prepare() -> int:
            engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
            await migrate.upgrade(engine, args.revision or "head")
            await engine.dispose()
            import asyncpg

            conn = await asyncpg.connect(dsn)
            await conn.execute(
                "INSERT INTO users (id, username, password_hash, scopes, disabled, created_at)"
                " VALUES ($1, 'bench', 'x', 'profile', false, 0)",
                str(uuid.uuid4()),
            )
            await conn.execute(
                "INSERT INTO clients (client_id, grant_types, scopes, refresh_delivery,"
                " created_at) VALUES ('app', 'refresh_token', 'profile', 'body', 0)"
            )
            await conn.close()
            return await total_size(dsn)

        before = asyncio.run(prepare())
        now = int(time.time())
        took = asyncio.run(
            preload(dsn, args.families, "live", now, FAR, args.users, args.spread_days * DAY)
        )
        print(f"preloaded {args.families:,} live families in {took:.0f} s")
        print(f"sizes at revision {args.revision or 'head'}:")
        print_sizes(dsn, args.families, before)
        if args.upgrade:

            async def upgrade() -> float:
                engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
                began = time.perf_counter()
                await migrate.upgrade(engine)
                await engine.dispose()
                return time.perf_counter() - began

            took = asyncio.run(upgrade())
            # The rewrite builds each index in one sorted pass: fuller than random inserts.
            print(f"upgraded to head in {took:.1f} s (tables locked meanwhile); sizes:")
            print_sizes(dsn, args.families, before)
    finally:
        db_exec(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=1_000_000, help="families to preload")
    parser.add_argument("--duration", type=float, default=15, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the server")
    parser.add_argument("--revision", help="migrate only this far (with --sizes-only)")
    parser.add_argument(
        "--users",
        type=int,
        default=1,
        help="users the preloaded families belong to (realistic: 500000)",
    )
    parser.add_argument(
        "--spread-days",
        type=int,
        default=0,
        help="the families' ends spread over so many days (realistic: 30)",
    )
    parser.add_argument(
        "--sizes-only", action="store_true", help="preload and print sizes; no server, no load"
    )
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="with --sizes-only --revision: then migrate the preloaded rows to head, timed",
    )
    args = parser.parse_args()
    if args.families < 1:
        parser.error("--families must be at least 1")
    if args.revision and not args.sizes_only:
        parser.error("--revision needs --sizes-only: the server runs on the head schema only")
    sys.path.insert(0, str(ROOT))

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for text in machine():
        print(text)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.sizes_only:
        sizes_only(args)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    print(f"uvicorn speed extras: {ensure_speedups()}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{int(args.duration)}s per run, "
        f"serve --workers {args.workers}, rotation pool {POOL} families"
    )
    with tempfile.TemporaryDirectory(prefix="authserver-scale-") as tmp:
        stack = Stack("RS256", Path(tmp), args.workers)
        try:
            stack.start()
            before = asyncio.run(total_size(stack.dsn))
            print("\nempty database:")
            empty_rotation = rotate(stack, args, "empty")
            print(line("refresh rotation", empty_rotation))
            empty_intro = introspect(stack, args)
            print(line("introspection (access token with sid)", empty_intro))

            now = int(time.time())
            took = asyncio.run(
                preload(
                    stack.dsn, args.families, "live", now, FAR, args.users, args.spread_days * DAY
                )
            )
            print(f"\npreloaded {args.families:,} live families in {took:.0f} s; sizes:")
            print_sizes(stack.dsn, args.families, before)
            print("\nplans on the loaded database:")
            asyncio.run(explain(stack.dsn))

            print(f"\n{args.families:,} live families:")
            loaded_rotation = rotate(stack, args, "loaded")
            print(line("refresh rotation", loaded_rotation, empty_rotation))
            loaded_intro = introspect(stack, args)
            print(line("introspection (access token with sid)", loaded_intro, empty_intro))

            ago = now - 60 * DAY
            took = asyncio.run(preload(stack.dsn, args.families, "dead", ago, ago + DAY))
            print(f"\npreloaded {args.families:,} families expired 59 days ago in {took:.0f} s")
            alone = rotate(stack, args, "alone")
            print(line("refresh rotation, no purge", alone))
            purging, said = rotate_while_purging(stack, args)
            print(line("refresh rotation during the purge", purging, alone))
            print(f"  p99 during the purge / without: {purging.p99_ms / alone.p99_ms:.2f}x; {said}")
        finally:
            stack.close()
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
