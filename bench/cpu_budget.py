"""CPU per request of a real `authserver serve` on Postgres, measured in the processes that did
the work: the uvicorn workers' and the Postgres backends' utime + stime (/proc/PID/stat) over
one wrk run, divided by the requests served.

    .venv/bin/python bench/cpu_budget.py [--duration 10] [--rounds 3] [--workers 2]
                                         [--only jwks,client_credentials,rotation,code_exchange]

Throughput on this shared 2-core machine swings with whatever else runs; the CPU time a
request costs the server's own processes holds up much better, since another process's load
takes wall time from our workers but not CPU time. It is not immune: a loaded machine evicts
caches and adds context switches, so the load average is printed with every round.

One stack per signing algorithm (bench/http_bench.py's `Stack`: fresh database, migrated and
seeded with the CLI, `authserver serve --workers N`). Per path and round:

- workers: the sum over the uvicorn worker processes of utime + stime (clock ticks) before
  and after the wrk run, over the 200s wrk counted; in µs per request; of which stime (the
  kernel: system calls); and the workers' sleeps and preemptions per request
  (/proc/PID/task/*/status), which on 2 shared cores cost more than their system calls;
- postgres: the same for the backends connected to the stack's database (pg_stat_activity,
  read before and after; a backend that is gone by the end has its CPU lost, one that came
  during the run counts from 0): the SQL's own cost per request. JWKS and client_credentials
  run no SQL on the hot path (clients are cached), so theirs is ~0.

Paths: JWKS GET; client_credentials (Basic credentials); refresh rotation (public client,
each token presented once: http_bench's rotation script); code exchange (public client `web`,
scope openid profile, so an ID token is signed too; each code presented once with its PKCE
verifier: http_bench's exchange script, its codes minted by /authorize and copied in SQL before
the counters are read). All with `--alg`'s keys. The median of the rounds is the figure; the
spread is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import http_bench  # bench/ is on sys.path: this file runs as a script
from http_bench import (
    Measurement,
    Stack,
    clone_codes,
    code_pool_size,
    db_exec,
    exchange_codes,
    machine,
    rotate_tokens,
    wrk,
)

TICK = os.sysconf("SC_CLK_TCK")
PATHS = ("jwks", "client_credentials", "rotation", "code_exchange")
# What a code pool is sized for (http_bench.code_pool_size: twice this over the run): above
# any exchange rate seen on this machine, so that no run outlasts its pool.
EXCHANGES_PER_SECOND = 2_500


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    return sum(user_kernel_ticks(pid))


def user_kernel_ticks(pid: int) -> tuple[int, int]:
    """utime and stime of one process, in clock ticks: Python's own work against the system
    calls' (the socket sends and receives, epoll)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0, 0
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]), int(fields[12])


def switches(pid: int) -> tuple[int, int]:
    """How often the process went to sleep, and how often it was preempted (its threads'
    voluntary and involuntary context switches): on this machine each costs a worker tens of
    µs of CPU more than the work itself (cold caches after another process ran)."""
    slept = preempted = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    slept += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    preempted += int(line.split()[1])
    except FileNotFoundError:
        pass
    return slept, preempted


def backends(database: str) -> list[int]:
    sql = f"SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE datname = '{database}'"
    out = db_exec(sql)
    return [] if out == "None" else [int(pid) for pid in out.split()]


class Figures(NamedTuple):
    rps: float
    workers: float  # µs of CPU per 200, summed over the workers
    kernel: float  # ... of which in the kernel (stime)
    postgres: float  # µs of CPU per 200 in the database's Postgres backends
    sleeps: float  # the workers' voluntary context switches per 200
    preempted: float  # ... and involuntary ones


def measured(stack: Stack, run: Callable[[], Measurement]) -> tuple[Measurement, Figures]:
    """One run of `run` (a wrk load): its result, and per 200 the workers' CPU, of which in
    the kernel, and their sleeps, and the CPU of the Postgres backends of the stack's
    database."""
    workers = stack.worker_pids()
    before_pg = {pid: cpu_ticks(pid) for pid in backends(stack.db)}
    before = [user_kernel_ticks(pid) for pid in workers]
    switched = [switches(pid) for pid in workers]
    result = run()
    slept = sum(switches(pid)[0] - s[0] for pid, s in zip(workers, switched, strict=True))
    preempted = sum(switches(pid)[1] - s[1] for pid, s in zip(workers, switched, strict=True))
    after = [user_kernel_ticks(pid) for pid in workers]
    after_pg = {pid: cpu_ticks(pid) for pid in backends(stack.db)}
    served = result.rps * measured_seconds(result)
    pg = sum(ticks - before_pg.get(pid, 0) for pid, ticks in after_pg.items())
    per = 1e6 / TICK / max(served, 1)
    kernel = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    total = sum(sum(a) - sum(b) for a, b in zip(after, before, strict=True))
    count = max(served, 1)
    return result, Figures(
        result.rps, total * per, kernel * per, pg * per, slept / count, preempted / count
    )


def measured_seconds(result: Measurement) -> float:
    """wrk's own elapsed time, from its summary (requests/s × this = the 200s counted)."""
    found = http_bench.re.search(r"requests in ([\d.]+)(us|ms|s|m),", result.raw)
    assert found, result.raw
    return http_bench._ms(found.group(1) + found.group(2)) / 1000


Run = Callable[[], Measurement]


def path_runs(stack: Stack, args: argparse.Namespace) -> dict[str, Callable[[], Run]]:
    """Per path, what to do before a round (outside the measurement), which returns the load."""
    cc_script = stack.post_script("cc", "grant_type=client_credentials", basic=True)

    def rotation() -> Run:
        # A fresh pool of families per round, made by password logins (argon2: far more CPU
        # than the rotations themselves, so before the counters are read).
        pool = stack.refresh_pool(2 * args.connections)
        return lambda: rotate_tokens(stack.base, "/token", "app", pool, stack.workdir, args)

    pools: list[Path] = []

    def code_exchange() -> Run:
        # Codes of a live login session per connection (their sign-ins are argon2), minted by
        # /authorize and copied in SQL on the first round, copied again on the next ones:
        # a code lives 60 s, the login sessions longer.
        count = code_pool_size(EXCHANGES_PER_SECOND, args)
        if not pools:
            pools.append(stack.code_pool(count, args)[0])
        else:
            asyncio.run(clone_codes(stack.dsn, count, pools[0]))
        return lambda: exchange_codes(stack.base, "/token", "web", pools[0], stack.workdir, args)

    return {
        "jwks": lambda: lambda: wrk(f"{stack.base}/.well-known/jwks.json", None, args),
        "client_credentials": lambda: lambda: wrk(f"{stack.base}/token", cc_script, args),
        "rotation": rotation,
        "code_exchange": code_exchange,
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--alg", default="EdDSA", choices=["EdDSA", "RS256"])
    parser.add_argument("--only", default=",".join(PATHS), help="comma-separated paths")
    args = parser.parse_args()
    only = [p for p in args.only.split(",") if p]
    if unknown := set(only) - set(PATHS):
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(http_bench.ROOT))

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"uvicorn speed extras: {http_bench.ensure_speedups()}")
    for line in machine():
        print(line)
    print(f"load average at start: {load()}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{int(args.duration)}s; serve --workers "
        f"{args.workers}, {args.alg}; µs of CPU (utime+stime) per 200, summed over the workers "
        "and over the database's Postgres backends"
    )
    figures: dict[str, list[Figures]] = {p: [] for p in only}
    with tempfile.TemporaryDirectory(prefix="authserver-cpubudget-") as tmp:
        stack = Stack(args.alg, Path(tmp), args.workers)
        try:
            stack.start()
            runs = path_runs(stack, args)
            for round_ in range(1, args.rounds + 1):
                for path in only:
                    result, got = measured(stack, runs[path]())
                    figures[path].append(got)
                    print(
                        f"round {round_} {path:<20} {got.rps:>8,.0f} req/s  workers "
                        f"{got.workers:6.1f} µs (kernel {got.kernel:5.1f}, sleeps "
                        f"{got.sleeps:4.2f}, preempted {got.preempted:4.2f})  postgres "
                        f"{got.postgres:6.1f} µs  "
                        f"errors {result.errors}  load {load()}"
                    )
        finally:
            stack.close()
    print()
    print(
        f"{'path':<20} {'req/s':>8} {'workers µs':>11} {'(spread)':>15} {'kernel µs':>10} "
        f"{'sleeps':>7} {'preempted':>10} {'postgres µs':>12}"
    )
    for path, rows in figures.items():
        w = [r.workers for r in rows]
        print(
            f"{path:<20} {statistics.median(r.rps for r in rows):>8,.0f} "
            f"{statistics.median(w):>11.1f} {f'({min(w):.0f}-{max(w):.0f})':>15} "
            f"{statistics.median(r.kernel for r in rows):>10.1f} "
            f"{statistics.median(r.sleeps for r in rows):>7.2f} "
            f"{statistics.median(r.preempted for r in rows):>10.2f} "
            f"{statistics.median(r.postgres for r in rows):>12.1f}"
        )
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
