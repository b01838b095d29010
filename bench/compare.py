"""authserver side by side with node-oidc-provider, in one run, driven by the same wrk scripts.

    .venv/bin/python bench/compare.py [--duration 15] [--connections 64] [--threads 2]
                                      [--workers 2] [--only PATH] [--alg RS256|EdDSA]

PATH is one of jwks, client_credentials, rotation, code_exchange. Needs what bench/http_bench.py
needs (Postgres on 127.0.0.1:5432, trust auth for `postgres`; wrk) plus node and npm: the peer
is installed with `npm ci` into bench/peer/node_modules (oidc-provider pinned by
bench/peer/package-lock.json) at the start of every run.

For each signing algorithm: authserver on a fresh Postgres database (`serve --workers N`, its
JSON request log at info, every rotation and exchange committed with synchronous_commit on),
and bench/peer/server.mjs (oidc-provider, the same algorithm and key size, JWT access tokens,
refresh-token rotation, code + PKCE S256; its in-memory store, no request log). Per path, wrk
runs against the peer and then against authserver:

- JWKS GET (RS256 run only), client_credentials: the peer on 2 cluster workers;
- refresh rotation and code exchange: the peer as 1 process, as its in-memory store is per
  process (a token made by one worker is unknown to the other). Rotation: a pool of 2 x
  connections refresh tokens per server, each wrk connection spends one and takes the
  successor from the response. Code exchange (both algorithms, scope openid so each exchange
  signs an ID token and an access token and starts a refresh family on both servers): a pool
  of codes per server sized to 2 x its rotation rate x the duration, each presented once;
  the peer's minted over HTTP (/auth with login sessions made through its sign-in), authserver's
  minted by /authorize and copied in SQL (see http_bench.clone_codes).

Successes are 200s only; every other answer is an error, and `exhausted` counts requests sent
after a pool ran dry. Every server is stopped and every database dropped at the end, also on
Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import http_bench as hb  # bench/ is first on sys.path: this file runs as a script

PEER_DIR = Path(__file__).resolve().parent / "peer"
PATHS = ("jwks", "client_credentials", "rotation", "code_exchange")
# A code-exchange pool's size when no rotation ran before it to measure the rate.
GUESSED_RPS = 3000.0


def install_peer() -> str:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y nodejs npm")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"npm ci in {PEER_DIR} failed:\n{done.stdout}{done.stderr}")
    package = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
    version = json.loads(package.read_text())["version"]
    node = subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip()
    return f"node {node}, oidc-provider {version} (npm ci in bench/peer)"


class Peer:
    """bench/peer/server.mjs on a free port, in a process group of its own."""

    def __init__(self, alg: str, workdir: Path, workers: int) -> None:
        self.alg = alg
        self.workers = workers
        self.workdir = workdir / f"peer-{alg}-{workers}"
        self.workdir.mkdir()
        self.port = hb.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.workdir / "peer.log"
        command = ["node", "server.mjs", "--port", str(self.port), "--alg", self.alg]
        # --secret=…: a secret may begin with "-", which parseArgs would take for an option.
        command += ["--workers", str(self.workers), f"--secret={self.secret}"]
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                command, cwd=PEER_DIR, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        hb.wait_ready(f"{self.base}/jwks", self.proc, log, self.workers, "peer listening")

    def close(self) -> None:
        """SIGTERM to the group (the cluster primary and its workers), SIGKILL if it hangs."""
        if self.proc is None:
            return
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
        return (
            pool,
            f"{count:,} codes by /auth under {len(cookies)} users' sessions "
            f"({count / seconds:,.0f}/s)",
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


@dataclass
class Row:
    path: str
    peer: hb.Measurement
    ours: hb.Measurement
    note: str = ""


def static_post(workdir: Path, name: str, body: str, basic: str) -> Path:
    script = workdir / f"{name}.lua"
    extra = f'wrk.headers["Authorization"] = "{basic}"'
    script.write_text(hb.STATIC_POST.format(body=body, extra=extra))
    return script


def stateless(
    stack: hb.Stack, peer: Peer, args: argparse.Namespace, wanted: set[str], rows: list[Row]
) -> None:
    if "jwks" in wanted and stack.alg == "RS256":
        theirs = hb.wrk(f"{peer.base}/jwks", None, args)
        ours = hb.wrk(f"{stack.base}/.well-known/jwks.json", None, args)
        sizes = [
            len(hb.http("GET", url))
            for url in (f"{peer.base}/jwks", f"{stack.base}/.well-known/jwks.json")
        ]
        note = f"peer: 2 cluster workers; body {sizes[0]} bytes (peer), {sizes[1]} (authserver)"
        rows.append(Row("JWKS GET", theirs, ours, note))
    if "client_credentials" in wanted:
        body = "grant_type=client_credentials"
        theirs = hb.wrk(
            f"{peer.base}/token", static_post(peer.workdir, "cc", body, peer.basic), args
        )
        ours = hb.wrk(
            f"{stack.base}/token", static_post(stack.workdir, "cc", body, stack.basic), args
        )
        rows.append(Row(f"client_credentials {stack.alg}", theirs, ours, "peer: 2 cluster workers"))


def stateful(
    stack: hb.Stack, peer: Peer, args: argparse.Namespace, wanted: set[str], rows: list[Row]
) -> None:
    alg, families = stack.alg, 2 * args.connections
    rates = {"peer": GUESSED_RPS, "ours": GUESSED_RPS}
    if "rotation" in wanted:
        theirs = hb.rotate_tokens(
            peer.base, "/token", "app", peer.refresh_pool(families, args), peer.workdir, args
        )
        ours = hb.rotate_tokens(
            stack.base, "/token", "app", stack.refresh_pool(families), stack.workdir, args
        )
        rates = {"peer": theirs.rps, "ours": ours.rps}
        note = f"{families} families each; peer: 1 process, in memory; authserver: Postgres"
        rows.append(Row(f"refresh rotation {alg}", theirs, ours, note))
    if "code_exchange" in wanted:
        pool, peer_how = peer.mint(hb.code_pool_size(rates["peer"], args), "openid api", args)
        theirs = hb.exchange_codes(peer.base, "/token", "app", pool, peer.workdir, args)
        pool, our_how = stack.code_pool(hb.code_pool_size(rates["ours"], args), args)
        ours = hb.exchange_codes(stack.base, "/token", "web", pool, stack.workdir, args)
        note = f"peer: 1 process, {peer_how}; authserver: {our_how}"
        rows.append(Row(f"code exchange {alg} (openid)", theirs, ours, note))


def print_rows(rows: list[Row]) -> None:
    def cells(m: hb.Measurement) -> str:
        errors = f"{m.errors}" + (f" ({m.exhausted} dry)" if m.exhausted else "")
        return f"{m.rps:>8,.0f} {m.p50_ms:>7.2f} {m.p99_ms:>7.2f} {errors:>7}"

    print(f"{'':<34} {'oidc-provider':<32} {'authserver':<32}")
    head = f"{'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7}"
    print(f"{'path':<34} {head} {head}  {'ratio':>6}")
    for row in rows:
        ratio = row.ours.rps / row.peer.rps if row.peer.rps else float("nan")
        print(f"{row.path:<34} {cells(row.peer)} {cells(row.ours)}  {ratio:>5.2f}x")
    print("ratio: authserver req/s / oidc-provider req/s (200s only, same run). Per path:")
    for row in rows:
        print(f"  {row.path}: {row.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="authserver's uvicorn workers")
    parser.add_argument("--only", choices=PATHS, help="one path only")
    parser.add_argument("--alg", choices=["RS256", "EdDSA"], help="one algorithm only")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if args.duration > hb.CODE_TTL - 10 and args.only in (None, "code_exchange"):
        parser.error(f"--duration: codes live {hb.CODE_TTL} s, a code-exchange run must be shorter")
    sys.path.insert(0, str(hb.ROOT))
    # SIGTERM unwinds like Ctrl-C, through every `finally` that stops a server or drops a DB.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wanted = {args.only} if args.only else set(PATHS)

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"peer: {install_peer()}")
    print(f"uvicorn speed extras: {hb.ensure_speedups()}")
    for line in hb.machine():
        print(line)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{int(args.duration)}s per run, the peer "
        f"first; authserver serve --workers {args.workers} on Postgres; wrk, both servers and "
        "Postgres share the cores"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="authserver-compare-") as tmp:
        for alg in ("RS256", "EdDSA"):
            if args.alg and alg != args.alg:
                continue
            stack = hb.Stack(alg, Path(tmp), args.workers)
            peers = [Peer(alg, Path(tmp), 2), Peer(alg, Path(tmp), 1)]
            try:
                stack.start()
                if wanted & {"jwks", "client_credentials"}:
                    peers[0].start()
                    stateless(stack, peers[0], args, wanted, rows)
                    peers[0].close()
                if wanted & {"rotation", "code_exchange"}:
                    peers[1].start()
                    stateful(stack, peers[1], args, wanted, rows)
            finally:
                for peer in peers:
                    peer.close()
                stack.close()
    print()
    print_rows(rows)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
