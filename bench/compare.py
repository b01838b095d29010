"""authserver side by side with node-oidc-provider, alternating, driven by the same wrk scripts.

    .venv/bin/python bench/compare.py [--duration 15] [--alternations 3] [--connections 64]
                                      [--threads 2] [--workers 2] [--only PATH] [--alg RS256|EdDSA]
                                      [--redis redis://127.0.0.1:6379]
    .venv/bin/python bench/compare.py --quick      # ~2 minutes: EdDSA, -d2s, one alternation

PATH is one of jwks, client_credentials, rotation, code_exchange. Needs what bench/http_bench.py
needs (Postgres on 127.0.0.1:5432, trust auth for `postgres`; wrk) plus node and npm, and for the
stateful paths a Redis server: the peer is installed with `npm ci` into bench/peer/node_modules
(oidc-provider and ioredis pinned by bench/peer/package-lock.json) at the start of every run.

For each signing algorithm: authserver on a fresh Postgres database (`serve --workers N`, its
JSON request log at info, every rotation and exchange committed with synchronous_commit on),
and bench/peer/server.mjs (oidc-provider, the same algorithm and key size, JWT access tokens,
refresh-token rotation, code + PKCE S256; no request log). The contenders per path:

- JWKS GET (on the first algorithm run only), client_credentials: the peer on 2 cluster workers
  (its in-memory store; neither path stores anything) against authserver;
- refresh rotation and code exchange: the peer twice, in memory as 1 process (its store is per
  process: a token made by one worker is unknown to the other) and as its users deploy it, on
  2 cluster workers sharing a Redis store through bench/peer/redis_adapter.mjs (oidc-provider's
  example Redis adapter, keys under a prefix of this run's own, deleted before each of its runs
  and at the end). Rotation: a pool of 2 x connections refresh tokens per run, each wrk
  connection spends one and takes the successor from the response. Code exchange (scope openid,
  so each exchange signs an ID token and an access token and starts a refresh family on both
  servers): a pool of codes per run sized to 2 x the fastest rate the contender showed so far
  (on rotation or on this path) x the duration, each presented once; the peer's minted over HTTP
  (/auth with login sessions made through its sign-in), authserver's minted by /authorize and
  copied in SQL (see http_bench.clone_codes).

Each path runs --alternations times; each alternation runs every contender once, in an order that
reverses from one alternation to the next (peer, authserver; then authserver, peer; or in memory,
authserver, Redis; then Redis, authserver, in memory), so a load that drifts through the run
favours neither side on average. JWKS and client_credentials first give each contender an
unrecorded 2 s run (a node process just started has not compiled its hot paths); the stateful
paths warm up by making their pools. Per path: each run's rate, and the ratio authserver/peer
per alternation, its median and its spread (min-max). Also per run, the CPU per request of every
process of the contender (/proc utime + stime around the wrk run, over its 200s): authserver's
workers and the Postgres backends of its database; the peer's node processes and, on Redis, the
Redis server (all of it: a shared server's other work counts too); and per alternation the
peer's CPU per request over ours, steadier than the rates on a loaded machine. Every run prints
its line as it ends, with the load average before and after it (and, on Redis, how many keys
the flush before it deleted).

Successes are 200s only; every other answer is an error, and `dry` counts requests sent after a
pool ran out; any error makes the exit status 1. Every server is stopped, every database dropped
and the peer's Redis keys deleted at the end, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from math import nan
from pathlib import Path

import http_bench as hb  # bench/ is first on sys.path: this file runs as a script

PEER_DIR = Path(__file__).resolve().parent / "peer"
PATHS = ("jwks", "client_credentials", "rotation", "code_exchange")
# A code-exchange pool's size when no rotation ran before it to measure the rate.
GUESSED_RPS = 3000.0
# Seconds of the unrecorded run of each contender before a stateless path's first alternation.
WARM_UP = 2
# The pools' sign-ins (authserver's password logins and sign-in pages) hash with argon2id at its
# minimum cost, so a pool takes a second rather than ~15 s of 64 MiB hashes; no measured request
# hashes a password, and the peer's sign-in checks none.
CHEAP_ARGON2 = {
    "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
    "AUTHSERVER_ARGON2_TIME_COST": "1",
    "AUTHSERVER_ARGON2_PARALLELISM": "1",
}

OURS, CLUSTER, MEMORY, REDIS = "ours", "cluster", "memory", "redis"
STATELESS = (CLUSTER, OURS)
STATEFUL = (MEMORY, OURS, REDIS)


def install_peer() -> str:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y nodejs npm")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"npm ci in {PEER_DIR} failed:\n{done.stdout}{done.stderr}")

    def version(package: str) -> str:
        path = PEER_DIR / "node_modules" / package / "package.json"
        return str(json.loads(path.read_text())["version"])

    node = subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip()
    return (
        f"node {node}, oidc-provider {version('oidc-provider')}, "
        f"ioredis {version('ioredis')} (npm ci in bench/peer)"
    )


def redis_store(*argv: str) -> str:
    """bench/peer/redis_store.mjs (`info`, or `flush --prefix P`) with the peer's own client."""
    done = subprocess.run(
        ["node", "redis_store.mjs", *argv], cwd=PEER_DIR, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"redis_store.mjs {' '.join(argv)}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


class Peer:
    """bench/peer/server.mjs on a free port, in a process group of its own; `store` is memory
    (one store per process) or redis (one store under `prefix`, shared by the workers)."""

    def __init__(
        self, alg: str, workdir: Path, workers: int, store: str = "memory", redis: str = ""
    ) -> None:
        self.alg = alg
        self.workers = workers
        self.store = store
        self.redis = redis
        self.prefix = f"authserver-compare-{os.getpid()}-{alg.lower()}:"
        self.workdir = workdir / f"peer-{alg}-{store}-{workers}"
        self.workdir.mkdir()
        self.port = hb.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[bytes] | None = None
        # Keys deleted by the last flush(), shown with the run that follows; None in memory.
        self.flushed: int | None = None

    def start(self) -> None:
        log = self.workdir / "peer.log"
        command = ["node", "server.mjs", "--port", str(self.port), "--alg", self.alg]
        # --secret=…: a secret may begin with "-", which parseArgs would take for an option.
        command += ["--workers", str(self.workers), f"--secret={self.secret}"]
        command += ["--store", self.store]
        if self.store == "redis":
            command += ["--redis", self.redis, f"--redis-prefix={self.prefix}"]
            self.flush()  # a key left by a run with this pid long ago
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                command, cwd=PEER_DIR, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        hb.wait_ready(f"{self.base}/jwks", self.proc, log, self.workers, "peer listening")

    def flush(self) -> int:
        """Deletes the peer's Redis keys (none for a store in memory); returns how many."""
        if self.store != "redis":
            return 0
        self.flushed = int(redis_store("flush", "--redis", self.redis, f"--prefix={self.prefix}"))
        return self.flushed

    def close(self) -> None:
        """SIGTERM to the group (the cluster primary and its workers), SIGKILL if it hangs; then
        its Redis keys go."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # workers that outlived the primary
            self.proc.wait()
            self.proc = None
            self.flush()

    @property
    def basic(self) -> str:
        return hb.basic_auth("svc", self.secret)

    def mint(self, count: int, scope: str, args: argparse.Namespace) -> tuple[Path, str]:
        """`count` codes of the public client `app` from /auth, under as many login sessions
        as connections (each made through the sign-in, which grants at once)."""
        query = hb.authorize_query("/auth", "app", scope)
        first = f"{self.base}{query}&state=s&code_challenge={'A' * 43}"
        cookies = hb.browser_sessions(first, hb.bench_users(args.connections), "")
        pool, seconds = hb.mint_codes(self.base, query, cookies, count, self.workdir, args, "/jwks")
        got = pool.read_text().count("\n")
        return (
            pool,
            f"{got:,} codes by /auth under {len(cookies)} users' sessions ({got / seconds:,.0f}/s)",
        )

    def refresh_pool(self, count: int, args: argparse.Namespace) -> Path:
        """`count` refresh families (scope api: no ID token on refresh, as authserver's), each
        started by a code exchange."""
        codes, _ = self.mint(count, "api", args)

        def exchange(line: str) -> str:
            code, verifier = line.split()
            fields = {
                "grant_type": "authorization_code",
                "client_id": "app",
                "redirect_uri": hb.REDIRECT_URI,
                "code": code,
                "code_verifier": verifier,
            }
            answer = hb.http("POST", f"{self.base}/token", urllib.parse.urlencode(fields))
            return str(json.loads(answer)["refresh_token"])

        tokens = hb.in_threads(exchange, codes.read_text().splitlines())
        path = self.workdir / "refresh_tokens.txt"
        path.write_text("\n".join(tokens) + "\n")
        return path


def cpu_ticks(pids: set[int]) -> dict[int, int]:
    """utime + stime of each live process of `pids`, in clock ticks (/proc/PID/stat)."""
    ticks = {}
    for pid in pids:
        try:
            # After the parenthesised command (which may hold spaces): field 3 onwards.
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone
        ticks[pid] = int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks


@dataclass
class Run:
    """One wrk run of one contender, and the CPU its server's processes spent in it."""

    m: hb.Measurement
    cpu_us: float  # µs of CPU per successful request, every process of the contender
    parts: str  # where that CPU went, by process kind


@dataclass
class Series:
    """One path's runs: per contender, one per alternation."""

    path: str
    contenders: tuple[str, ...]
    labels: dict[str, str]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def rates(self, key: str) -> list[float]:
        return [run.m.rps for run in self.runs.get(key, [])]

    def ratios(self, peer: str) -> list[float]:
        """authserver's rate over the peer's, per alternation."""
        pairs = zip(self.runs.get(OURS, []), self.runs.get(peer, []), strict=False)
        return [ours.m.rps / theirs.m.rps if theirs.m.rps else nan for ours, theirs in pairs]

    def cpu_ratios(self, peer: str) -> list[float]:
        """The peer's CPU per request over authserver's, per alternation (above 1: ours costs
        less): steadier than the rates on a loaded machine."""
        pairs = zip(self.runs.get(OURS, []), self.runs.get(peer, []), strict=False)
        return [theirs.cpu_us / ours.cpu_us if ours.cpu_us else nan for ours, theirs in pairs]

    def errors(self) -> int:
        return sum(run.m.errors for runs in self.runs.values() for run in runs)


# A contender's run, made ready: its pool made and its Redis flushed; calling it runs wrk.
Ready = Callable[[], hb.Measurement]


class Bench:
    """The runs of one algorithm: authserver's stack and the peers it is compared with."""

    def __init__(self, stack: hb.Stack, peers: dict[str, Peer], args: argparse.Namespace) -> None:
        self.stack = stack
        self.peers = peers
        self.args = args
        self.tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        self.redis_pid = self._redis_pid()

    def _redis_pid(self) -> int | None:
        """The Redis server's pid when it runs on this machine (its CPU is the peer's too)."""
        if REDIS not in self.peers:
            return None
        out = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True)
        pids = out.stdout.split()
        return int(pids[0]) if len(pids) == 1 else None

    def processes(self, key: str) -> dict[int, str]:
        """Every process that serves contender `key`, by kind: authserver's workers and the
        Postgres backends of its database; the peer's node processes (and Redis)."""
        if key == OURS:
            found = dict.fromkeys(self.stack.worker_pids(), "workers")
            backends = hb.db_exec(
                "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity"
                f" WHERE datname = '{self.stack.db}' AND pid <> pg_backend_pid()"
            )
            found |= dict.fromkeys((int(pid) for pid in backends.split()), "Postgres")
            return found
        peer = self.peers[key]
        assert peer.proc is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(peer.proc.pid)], capture_output=True, text=True
        )
        found = dict.fromkeys((int(pid) for pid in out.stdout.split()), "node")
        if key == REDIS and self.redis_pid is not None:
            found[self.redis_pid] = "Redis"
        return found

    def measure(self, key: str, go: Ready) -> Run:
        """`go`, with the CPU of the contender's processes read before and after (a process
        that appears during the run counts from zero, one that exits is lost)."""
        kinds = self.processes(key)
        before = cpu_ticks(set(kinds))
        m = go()
        kinds |= self.processes(key)
        after = cpu_ticks(set(kinds))
        spent: dict[str, float] = {}
        for pid, ticks in after.items():
            used = (ticks - before.get(pid, 0)) * self.tick_us
            spent[kinds[pid]] = spent.get(kinds[pid], 0.0) + used
        done = m.rps * self.args.duration or 1.0
        order = ("workers", "Postgres", "node", "Redis")
        parts = " + ".join(f"{kind} {spent[kind] / done:,.0f}" for kind in order if kind in spent)
        return Run(m, sum(spent.values()) / done, parts)

    def alternate(self, series: Series, prepare: Callable[[str], Ready]) -> Series:
        """Runs every contender once per alternation, the order reversed every other time."""
        count = self.args.alternations
        for alt in range(count):
            order = series.contenders if alt % 2 == 0 else series.contenders[::-1]
            for key in order:
                go = prepare(key)
                before = os.getloadavg()[0]
                run = self.measure(key, go)
                after = os.getloadavg()[0]
                series.runs.setdefault(key, []).append(run)
                m = run.m
                dry = f" ({m.exhausted} dry)" if m.exhausted else ""
                flushed = self.peers[key].flushed if key in self.peers else None
                store = "" if flushed is None else f"; {flushed:,} Redis keys deleted before"
                print(
                    f"  {time.strftime('%H:%M:%S', time.gmtime())} {series.path} "
                    f"[{alt + 1}/{count}] {series.labels[key]}: {m.rps:,.0f}/s, "
                    f"p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms, {m.errors} errors{dry}, "
                    f"CPU {run.cpu_us:,.0f} µs/request ({run.parts}) "
                    f"(load {before:.2f} -> {after:.2f}{store})",
                    flush=True,
                )
        return series

    def warm_up(self, series: Series, prepare: Callable[[str, argparse.Namespace], Ready]) -> None:
        """A short unrecorded run of each contender first: a node process just started has
        not compiled its hot paths yet, and the first alternation would pay for it."""
        short = argparse.Namespace(**{**vars(self.args), "duration": WARM_UP})
        for key in series.contenders:
            prepare(key, short)()

    def labels(self, keys: tuple[str, ...]) -> dict[str, str]:
        names = {
            OURS: f"authserver ({self.stack.workers} workers, Postgres)",
            CLUSTER: "oidc-provider (2 workers, in memory)",
            MEMORY: "oidc-provider in memory (1 process)",
            REDIS: "oidc-provider on Redis (2 workers)",
        }
        return {key: names[key] for key in keys}

    def jwks(self) -> Series:
        peer, stack = self.peers[CLUSTER], self.stack
        urls = {CLUSTER: f"{peer.base}/jwks", OURS: f"{stack.base}/.well-known/jwks.json"}
        series = Series(f"JWKS GET ({stack.alg} keys)", STATELESS, self.labels(STATELESS))

        def prepare(key: str, args: argparse.Namespace = self.args) -> Ready:
            return lambda: hb.wrk(urls[key], None, args)

        self.warm_up(series, prepare)
        self.alternate(series, prepare)
        sizes = {key: len(hb.http("GET", url)) for key, url in urls.items()}
        series.notes.append(
            f"body {sizes[CLUSTER]} bytes (peer, 1 key), {sizes[OURS]} (authserver, its keys)"
        )
        return series

    def client_credentials(self) -> Series:
        peer, stack = self.peers[CLUSTER], self.stack
        body = "grant_type=client_credentials"
        targets = {
            CLUSTER: (peer.base, static_post(peer.workdir, "cc", body, peer.basic)),
            OURS: (stack.base, static_post(stack.workdir, "cc", body, stack.basic)),
        }
        series = Series(f"client_credentials {stack.alg}", STATELESS, self.labels(STATELESS))

        def prepare(key: str, args: argparse.Namespace = self.args) -> Ready:
            base, script = targets[key]
            return lambda: hb.wrk(f"{base}/token", script, args)

        self.warm_up(series, prepare)
        return self.alternate(series, prepare)

    def rotation(self) -> Series:
        stack, args, families = self.stack, self.args, 2 * self.args.connections
        series = Series(f"refresh rotation {stack.alg}", STATEFUL, self.labels(STATEFUL))

        def prepare(key: str) -> Ready:
            if key == OURS:
                pool = stack.refresh_pool(families)
                return lambda: hb.rotate_tokens(
                    stack.base, "/token", "app", pool, stack.workdir, args
                )
            peer = self.peers[key]
            peer.flush()
            pool = peer.refresh_pool(families, args)
            return lambda: hb.rotate_tokens(peer.base, "/token", "app", pool, peer.workdir, args)

        self.alternate(series, prepare)
        series.notes.append(
            f"{families} families per run, each token spent once; authserver: every rotation "
            "committed to Postgres (synchronous_commit on); the peer's Redis keeps nothing on disk"
        )
        return series

    def code_exchange(self, rotation: Series | None) -> Series:
        stack, args = self.stack, self.args
        series = Series(f"code exchange {stack.alg} (openid)", STATEFUL, self.labels(STATEFUL))
        how: dict[str, str] = {}

        def pool_size(key: str) -> int:
            # 2x the fastest this contender went so far, on rotation (faster than an exchange) or
            # here: under load a rate swings by more than 2x between runs, and a pool sized from
            # the exchange run before alone ran dry.
            seen = series.rates(key) + (rotation.rates(key) if rotation else [])
            return hb.code_pool_size(max(seen, default=GUESSED_RPS), args)

        def prepare(key: str) -> Ready:
            if key == OURS:
                pool, how[key] = stack.code_pool(pool_size(key), args)
                return lambda: hb.exchange_codes(
                    stack.base, "/token", "web", pool, stack.workdir, args
                )
            peer = self.peers[key]
            peer.flush()
            pool, how[key] = peer.mint(pool_size(key), "openid api", args)
            return lambda: hb.exchange_codes(peer.base, "/token", "app", pool, peer.workdir, args)

        self.alternate(series, prepare)
        series.notes += [f"last pool, {series.labels[key]}: {how[key]}" for key in STATEFUL]
        return series


def static_post(workdir: Path, name: str, body: str, basic: str) -> Path:
    script = workdir / f"{name}.lua"
    extra = f'wrk.headers["Authorization"] = "{basic}"'
    script.write_text(hb.STATIC_POST.format(body=body, extra=extra))
    return script


def run_algorithm(
    alg: str, tmp: Path, args: argparse.Namespace, wanted: set[str], first: bool
) -> list[Series]:
    """Every wanted path for one algorithm; JWKS only on the `first` algorithm run."""
    done: list[Series] = []
    # Each server's close is registered before it starts, and every one of them runs even when
    # another fails: a database is dropped whatever happened to the peers.
    with contextlib.ExitStack() as cleanup:
        stack = hb.Stack(alg, tmp, args.workers)
        stack.env.update(CHEAP_ARGON2)
        cleanup.callback(stack.close)
        stack.start()

        def started(workers: int, store: str = "memory") -> Peer:
            peer = Peer(alg, tmp, workers, store, args.redis)
            cleanup.callback(peer.close)
            peer.start()
            return peer

        stateless = (wanted & {"client_credentials"}) | (wanted & {"jwks"} if first else set())
        if stateless:
            cluster = started(2)
            bench = Bench(stack, {CLUSTER: cluster}, args)
            if "jwks" in stateless:
                done.append(bench.jwks())
            if "client_credentials" in stateless:
                done.append(bench.client_credentials())
            cluster.close()  # idle from here on; its close is registered too, and does nothing
        if wanted & {"rotation", "code_exchange"}:
            peers = {MEMORY: started(1), REDIS: started(2, "redis")}
            bench = Bench(stack, peers, args)
            rotation = bench.rotation() if "rotation" in wanted else None
            done += [rotation] if rotation else []
            if "code_exchange" in wanted:
                done.append(bench.code_exchange(rotation))
    return done


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:.2f}x (spread {min(values):.2f}-{max(values):.2f}x)"


def print_series(all_series: list[Series]) -> None:
    for series in all_series:
        print(f"{series.path}")
        for key in series.contenders:
            runs = series.runs.get(key, [])
            rates = " · ".join(f"{run.m.rps:,.0f}" for run in runs)
            cpu = " · ".join(f"{run.cpu_us:,.0f}" for run in runs)
            p99 = " · ".join(f"{run.m.p99_ms:.1f}" for run in runs)
            errors = sum(run.m.errors for run in runs)
            dry = sum(run.m.exhausted for run in runs)
            print(
                f"  {series.labels[key]:<40} req/s {rates}; CPU µs/req {cpu}; p99 ms {p99}; "
                f"errors {errors}" + (f" ({dry} dry)" if dry else "")
            )
        for key in series.contenders:
            if key == OURS:
                continue
            ratios, costs = series.ratios(key), series.cpu_ratios(key)
            each = " · ".join(f"{r:.2f}" for r in ratios)
            print(f"  ratio vs {series.labels[key]}: median {spread(ratios)}; each {each}")
            each = " · ".join(f"{r:.2f}" for r in costs)
            print(f"    its CPU/request over ours: median {spread(costs)}; each {each}")
        for note in series.notes:
            print(f"  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 15)")
    parser.add_argument(
        "--alternations", type=int, help="runs of each contender per path (default 3)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="authserver's uvicorn workers")
    parser.add_argument("--only", choices=PATHS, action="append", help="this path (repeatable)")
    parser.add_argument("--alg", choices=["RS256", "EdDSA"], help="one algorithm only")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="the peer's Redis")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a try-out in ~2 min: --alg EdDSA --duration 2 --alternations 1 unless given",
    )
    args = parser.parse_args()
    if args.quick:
        args.alg = args.alg or "EdDSA"
    args.duration = args.duration or (2 if args.quick else 15)
    args.alternations = args.alternations or (1 if args.quick else 3)
    if args.alternations < 1 or args.duration < 1:
        parser.error("--alternations and --duration must be at least 1")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    wanted = set(args.only or PATHS)
    if args.duration > hb.CODE_TTL - 10 and "code_exchange" in wanted:
        parser.error(f"--duration: codes live {hb.CODE_TTL} s, a code-exchange run must be shorter")
    sys.path.insert(0, str(hb.ROOT))
    # SIGTERM unwinds like Ctrl-C, through every `finally` that stops a server or drops a DB.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"peer: {install_peer()}")
    if wanted & {"rotation", "code_exchange"}:
        print(f"peer's store as deployed: {redis_store('info', '--redis', args.redis)}")
    print(f"uvicorn speed extras: {hb.ensure_speedups()}")
    for line in hb.machine():
        print(line)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{int(args.duration)}s per run, "
        f"{args.alternations} alternation(s) per path, the order reversed every other one; "
        f"authserver serve --workers {args.workers} on Postgres; wrk, the servers, Postgres "
        "and Redis share the cores"
    )
    results: list[Series] = []
    with tempfile.TemporaryDirectory(prefix="authserver-compare-") as tmp:
        algs = [alg for alg in ("RS256", "EdDSA") if args.alg in (None, alg)]
        for i, alg in enumerate(algs):
            results += run_algorithm(alg, Path(tmp), args, wanted, first=i == 0)
    print()
    print_series(results)
    print(
        "ratio: authserver req/s / the peer's req/s in the same alternation (200s only); "
        "median and min-max over the alternations. CPU/request: utime + stime of every process "
        "of the contender (authserver: its workers and its database's Postgres backends; the "
        "peer: its node processes, and on Redis the Redis server) over its 200s"
    )
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    failed = [series.path for series in results if series.errors()]
    if failed:
        raise SystemExit(f"errors in: {', '.join(failed)}: those figures do not count")


if __name__ == "__main__":
    main()
