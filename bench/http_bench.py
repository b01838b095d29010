"""HTTP throughput of a real `authserver serve` on Postgres, driven by wrk over loopback.

    .venv/bin/python bench/http_bench.py [--duration 10] [--threads 2] [--connections 32]
                                         [--workers N] [--only RS256|EdDSA]
    .venv/bin/python bench/http_bench.py --profile client_credentials|rotation|code_exchange|jwks

(Not named http.py: run as a script, bench/ comes first on sys.path and a bench/http.py
would shadow the standard library's `http` package that uvicorn and Starlette import.)

Needs Postgres on 127.0.0.1:5432 (user postgres, trust auth) and `wrk` (Debian: apt-get
install -y wrk). uvloop and httptools (uvicorn's speed extras) are installed into this venv
with pip when missing, and the output says so.

For each signing algorithm (RS256, then EdDSA) it makes a fresh database, runs `authserver
migrate`, creates a user and two clients with the CLI, starts `authserver serve --workers N`
(default: one worker per CPU core) on a free port and runs wrk against it; at the end every
server is stopped and every database dropped. Printed per endpoint: requests/s, p50 and p99
latency, errors, and the ceiling measured in the same run, sized to the same N workers:

- JWKS GET against a bare Starlette app returning the same bytes, under uvicorn with N
  workers, uvloop and httptools, no access log;
- client_credentials and introspection against raw access-token signing in N processes
  (total signatures/s);
- password login against raw argon2id verify at the server's parameters on
  AUTHSERVER_PASSWORD_HASH_CONCURRENCY threads per worker x N (the server's cap): as many users
  as connections, each request the next user from an address of its own (X-Forwarded-For; the
  server trusts 127.0.0.1 as its proxy), so no throttle bucket fills; then one user from one
  address, which the throttle holds to 6 attempts in flight;
- refresh rotation: a pool of 2 x connections families made by logins, each wrk connection
  spending a token and reading the successor from the response (Lua `response()`), so every
  token is presented once and the pool never runs dry. Its ceiling is the server's own rotate
  statement (`_ROTATE_POSTGRES`, compiled as SQLAlchemy hands it to asyncpg) run alone on up to
  32 asyncpg connections, each spending a chain of tokens, one autocommit statement at a time;
- code exchange (issue 12), next to it: a pool of codes (scope openid profile, so each
  exchange signs an ID token too) sized to twice the rotation rate over the run, each
  presented once with its PKCE verifier; minted by /authorize under the login sessions of as
  many users as connections, then copied in SQL up to the pool size (`clone_codes`: a code
  lives 60 s and /authorize mints a few hundred a second here). No ceiling.

Requests/s count 200s (2xx for the static scripts) only; errors are every other answer or
socket error, and a pool that runs dry shows as errors, never as successes.

Also: p99 of a JWKS GET at ~100 requests/s (a second wrk) while logins saturate the CPU,
and the RSS of the worker processes (summed) under that login load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import html
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
AUTHSERVER = str(VENV_BIN / "authserver")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "correct horse battery staple"
MONTH = 30 * 86_400

T = TypeVar("T")

# --- Lua scripts for wrk ---------------------------------------------------------------------

STATIC_POST = """
wrk.method = "POST"
wrk.body = "{body}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
{extra}
"""

# Password logins of `users` users (bench-0 ...), each request the next user in turn and from
# an address of its own (X-Forwarded-For, the server trusting 127.0.0.1 as its proxy): the
# load of many people signing in, where no throttle bucket fills (throttle.py).
MANY_LOGINS = """
local n, i = {users}, 0
function request()
  i = i + 1
  local user = i % n
  local body = "grant_type=password&client_id=app&username=bench-" .. user
    .. "&password={password}"
  local headers = {{["Content-Type"] = "application/x-www-form-urlencoded",
                   ["X-Forwarded-For"] = "198.51.100." .. user}}
  return wrk.format("POST", nil, headers, body)
end
"""

PACED_GET = """
-- one request every {ms} ms per connection: a light, steady probe
function delay() return {ms} end
"""

# Prepended to the stateful scripts: each thread counts its responses by status, and done()
# prints the sums, parsed by wrk() below (wrk's own summary lumps every status below 400 with
# the successes). `exhausted`: requests sent without a token or code because the thread's pool
# was empty; each is a 400 too, so also among the non-200s.
COUNTS = """
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
end

ok, other, exhausted = 0, 0, 0
function count(status)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

-- The thread's slice of a pool file: every n-th line, kept as a FIFO (head/tail indices: the
-- length operator is undefined on a table with holes).
queue, head, tail = {}, 1, 0
function load_slice(path, n)
  local i = 0
  for line in io.lines(path) do
    if i % n == id then tail = tail + 1; queue[tail] = line end
    i = i + 1
  end
end
function pop()
  if head > tail then exhausted = exhausted + 1; return nil end
  local item = queue[head]
  queue[head] = nil
  head = head + 1
  return item
end
function push(item) tail = tail + 1; queue[tail] = item end

-- wrk 4 calls thread 0's request() once before the run to check the script
-- (script_verify_request) and sends nothing of it: that call must not take from the pool.
local checked = false
function check_call()
  local first = not checked
  checked = true
  return first and id == 0
end

function done(summary, latency, requests)
  local o, n, e = 0, 0, 0
  for _, t in ipairs(threads) do
    o, n, e = o + t:get("ok"), n + t:get("other"), e + t:get("exhausted")
  end
  io.write(string.format("lua counts: 200=%d other=%d exhausted=%d\\n", o, n, e))
end
"""

ROTATE = (
    COUNTS
    + """
-- args: pool file, threads, token path, body up to the token. Each thread takes every n-th
-- refresh token of the file; a connection pops one, spends it, and response() pushes the
-- successor, so every token is presented exactly once and at most one request holds it.
local path, prefix
function init(args)
  load_slice(args[1], tonumber(args[2]))
  path, prefix = args[3], args[4]
end

local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
function request()
  if check_call() then return wrk.format("GET", "/") end
  return wrk.format("POST", path, headers, prefix .. (pop() or "pool-exhausted"))
end

function response(status, hdrs, body)
  count(status)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then push(token) end
end
"""
)

EXCHANGE = (
    COUNTS
    + """
-- args: pool file of "code verifier" lines, threads, token path, body up to the code. Each
-- code is presented once, oldest first (codes live 60 s).
local path, prefix
function init(args)
  load_slice(args[1], tonumber(args[2]))
  path, prefix = args[3], args[4]
end

local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
function request()
  if check_call() then return wrk.format("GET", "/") end
  local code, verifier = "pool-exhausted", string.rep("x", 43)
  local line = pop()
  if line then code, verifier = line:match("^(%S+) (%S+)$") end
  return wrk.format("POST", path, headers,
    prefix .. "&code=" .. code .. "&code_verifier=" .. verifier)
end

function response(status, hdrs, body)
  count(status)
end
"""
)

MINT = (
    COUNTS
    + """
-- args: file of "state challenge verifier session" lines, threads, output prefix, authorize
-- path and query up to the PKCE fields, file of Cookie headers (one login session a line), a
-- cheap GET path. Each thread sends its slice of authorization requests, each with the cookie
-- of its session, and writes "code verifier" for each redirect that carries a code (matched by
-- state), then `<prefix><id>.done`; the caller stops wrk when every thread is done. Until
-- then, connections with nothing left GET the cheap path.
local out, prefix, filler, assigned, answered = nil, "", "", 0, 0
local verifiers, cookies = {}, {}
function init(args)
  load_slice(args[1], tonumber(args[2]))
  assigned = tail
  out = io.open(args[3] .. id, "w")
  done_path, prefix, filler = args[3] .. id .. ".done", args[4], args[6]
  for line in io.lines(args[5]) do cookies[#cookies + 1] = line end
  if assigned == 0 then io.open(done_path, "w"):close() end
end

function request()
  if check_call() then return wrk.format("GET", filler) end
  local line = pop()
  if not line then return wrk.format("GET", filler) end
  local state, challenge, verifier, session = line:match("^(%S+) (%S+) (%S+) (%d+)$")
  verifiers[state] = verifier
  return wrk.format("GET", prefix .. "&state=" .. state .. "&code_challenge=" .. challenge,
    {["Cookie"] = cookies[tonumber(session) + 1]})
end

function response(status, hdrs, body)
  local location = hdrs["location"] or hdrs["Location"]
  if not location and status == 200 then return end  -- the filler
  answered = answered + 1
  local code = location and location:match("[?&]code=([^&]+)")
  local state = location and location:match("[?&]state=([^&]+)")
  if location and code and state and verifiers[state] then
    out:write(code, " ", verifiers[state], "\\n")
    out:flush()  -- the caller watches the files grow to tell a lost request from a slow one
    ok = ok + 1
  else
    other = other + 1
  end
  if answered == assigned then
    out:close()
    io.open(done_path, "w"):close()
  end
end
"""
)

# The JWKS ceiling: run by `python -m uvicorn` from the temp dir, as multiple workers need an
# import string rather than an app object.
BARE_APP = """
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

PAYLOAD = Path({path!r}).read_bytes()


async def jwks(request):
    return Response(PAYLOAD, media_type="application/json")


app = Starlette(routes=[Route("/.well-known/jwks.json", jwks), Route("/healthz", jwks)])
"""


# --- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_speedups() -> str:
    missing = []
    for module in ("uvloop", "httptools"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        return f"installed into the venv: {' '.join(missing)}"
    return "uvloop and httptools already installed"


def db_exec(sql: str, database: str = "postgres") -> str:
    import asyncpg

    async def run() -> str:
        conn = await asyncpg.connect(ADMIN_URL.rsplit("/", 1)[0] + "/" + database)
        try:
            return str(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def machine() -> list[str]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")
    return [
        f"machine: {os.cpu_count()} cores ({model}), {platform.platform()}",
        f"Python {platform.python_version()}, Postgres {db_exec('SHOW server_version')}, "
        f"{wrk_version[0].strip()}",
    ]


def http(method: str, url: str, body: str | None = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def in_threads(work: Callable[[Any], T], items: Iterable[Any], threads: int = 4) -> list[T]:
    """`work` over `items` on a few threads. On Ctrl-C or an error the queued items are
    dropped at once (ThreadPoolExecutor's `with` would run them all first)."""
    pool = ThreadPoolExecutor(threads)
    try:
        return list(pool.map(work, items))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def basic_auth(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: each part form-encoded, then Basic."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def run_on_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    """The event loop the server runs on, so client and server pay the same per-call costs."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    workers: int,
    marker: str = "Application startup complete",
) -> None:
    """Waits until each of the `workers` has logged `marker` (by default uvicorn's end of
    startup) and `url` answers."""
    # 60 s: two uvicorn workers importing the app took over 30 s at a load average of 11.
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early:\n{log.read_text()[-2000:]}")
        if log.read_text(errors="replace").count(marker) >= workers:
            try:
                http("GET", url)
                return
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"server not ready after 60 s: {url}")


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of each child of `pid`."""
    out = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True
    ).stdout
    return [
        (int(child), args)
        for child, _, args in (line.strip().partition(" ") for line in out.splitlines())
    ]


def worker_pids(parent: int, workers: int) -> list[int]:
    """uvicorn's worker processes: the server process itself when it runs one worker, else the
    children its supervisor spawned (not multiprocessing's resource tracker, also a child)."""
    if workers == 1:
        return [parent]
    return [pid for pid, args in children(parent) if "spawn_main" in args]


def rss_kib(pids: list[int]) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "rss=", "-p", ",".join(map(str, pids))], capture_output=True, text=True
    ).stdout
    return [int(size) for size in out.split()]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and uvicorn's supervisor stops its workers; if it hangs, kill it and them."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        stragglers = [pid for pid, _ in children(proc.pid)]
        proc.kill()
        proc.wait()
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- wrk -------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One load: its rate of successes, latency percentiles and failures, from wrk or timed
    here. `rps` counts successes only (2xx; 200 where the script counts statuses itself);
    `errors` is every request that failed (other statuses, socket errors, timeouts), and
    `exhausted` those of them sent because the pool of tokens or codes had run dry."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    exhausted: int = 0
    raw: str = field(default="", repr=False)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _wrk_command(
    url: str,
    script: Path | None,
    threads: int,
    connections: int,
    duration: float,
    script_args: list[str] | None,
) -> list[str]:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s"]
    command += ["--latency", "--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    return command


def wrk(
    url: str,
    script: Path | None,
    args: argparse.Namespace,
    *,
    threads: int | None = None,
    connections: int | None = None,
    duration: float | None = None,
    script_args: list[str] | None = None,
) -> Measurement:
    command = _wrk_command(
        url,
        script,
        threads or args.threads,
        connections or args.connections,
        duration or args.duration,
        script_args,
    )
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    assert found, out
    answered, seconds = int(found.group(1)), _ms(found.group(2) + found.group(3)) / 1000
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    socket_errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        socket_errors = sum(int(g) for g in m.groups())
    exhausted = 0
    if m := re.search(r"lua counts: 200=(\d+) other=(\d+) exhausted=(\d+)", out):
        ok, failed, exhausted = (int(g) for g in m.groups())
    else:
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        failed = int(m.group(1)) if m else 0
        ok = answered - failed
    return Measurement(ok / seconds, p50, p99, failed + socket_errors, exhausted, out)


# --- authorization codes and refresh tokens ---------------------------------------------------

REDIRECT_URI = "http://127.0.0.1/cb"  # registered with the servers' code clients; never fetched
CODE_TTL = 60  # seconds a code lives in authserver (authorization_codes.CODE_TTL, not a setting)
STALLED = 15  # seconds without a code minted after which minting stops with what it has


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def browser_session(authorize_url: str, username: str, password: str) -> str:
    """Runs one authorization request as a browser would: follows the redirects, posts a
    sign-in form (with its CSRF token) if one is shown, until the redirect to REDIRECT_URI
    with a code. Returns the Cookie header later authorization requests send: the login
    session, so that each of them is answered with a code at once."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    url, body = authorize_url, None
    for _ in range(10):
        try:
            response = opener.open(urllib.request.Request(url, data=body), timeout=30)
        except urllib.error.HTTPError as exc:  # every 3xx, as redirects are not followed
            response = exc
        text = response.read().decode(errors="replace")
        if location := response.headers.get("Location"):
            url, body = urllib.parse.urljoin(url, location), None
            if url.startswith(REDIRECT_URI + "?"):
                if "code" not in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query):
                    raise SystemExit(f"sign-in ended without a code: {url}")
                break
            continue
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', text)
        action = re.search(r'<form method="post" action="([^"]+)"', text)
        if response.status != 200 or csrf is None or action is None:
            raise SystemExit(f"sign-in: unexpected {response.status} at {url}: {text[:500]}")
        url = urllib.parse.urljoin(url, html.unescape(action.group(1)))
        form = {"csrf_token": csrf.group(1), "username": username, "password": password}
        body = urllib.parse.urlencode(form).encode()
    else:
        raise SystemExit(f"sign-in: too many redirects from {authorize_url}")
    probe = urllib.request.Request(authorize_url)
    jar.add_cookie_header(probe)
    return probe.get_header("Cookie") or ""


def browser_sessions(authorize_url: str, usernames: list[str], password: str) -> list[str]:
    """A login session for each of `usernames`, as from as many people's browsers: the Cookie
    headers.

    Many people, as in a real run of sign-ins, not one person's many sessions: authserver
    holds the user's row and the login session's FOR SHARE through each code exchange (a
    racing disable or end-session must wait for it), and one row shared by every exchange
    of the run makes them queue on it (Postgres's multixact for each new sharer): with one
    user, the exchange rate fell by a fifth and its p99 tripled here."""
    return in_threads(lambda name: browser_session(authorize_url, name, password), usernames)


def bench_users(count: int) -> list[str]:
    """The names of the users code pools sign in as (Stack.clone_users makes them)."""
    return [f"bench-{i}" for i in range(count)]


def authorize_query(path: str, client_id: str, scope: str) -> str:
    """An authorization request's path and query, up to its state and PKCE challenge."""
    fields = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "code_challenge_method": "S256",
    }
    return f"{path}?{urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)}"


def mint_codes(
    base: str,
    query: str,
    cookies: list[str],
    count: int,
    workdir: Path,
    args: argparse.Namespace,
    filler: str,
) -> tuple[Path, float]:
    """`count` codes, each from its own authorization request with its own PKCE pair, sent by
    wrk, the login sessions of `cookies` taking turns. Returns the pool file ("code verifier"
    lines, in the order minted, so the oldest is spent first) and the seconds minting took."""
    pairs = workdir / "pkce.txt"
    lines = []
    for state in range(count):
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        session = state % len(cookies)
        lines.append(f"{state} {challenge.rstrip(b'=').decode()} {verifier} {session}\n")
    pairs.write_text("".join(lines))
    sessions = workdir / "cookies.txt"
    sessions.write_text("".join(f"{cookie}\n" for cookie in cookies))
    script = workdir / "mint.lua"
    script.write_text(MINT)
    prefix = workdir / "minted."
    threads = min(args.threads, count)
    extra = [str(pairs), str(threads), str(prefix), query, str(sessions), filler]
    command = _wrk_command(f"{base}/", script, threads, args.connections, 600, extra)
    began = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        done = [Path(f"{prefix}{i}.done") for i in range(threads)]
        outputs = [Path(f"{prefix}{i}") for i in range(threads)]
        grown, size = began, -1
        while not all(path.exists() for path in done):
            if proc.poll() is not None:
                raise SystemExit(f"wrk minting codes exited early: {proc.communicate()}")
            if time.perf_counter() - began > 300:
                raise SystemExit("minting codes took over 300 s")
            now_size = sum(path.stat().st_size for path in outputs if path.exists())
            if now_size != size:
                grown, size = time.perf_counter(), now_size
            elif time.perf_counter() - grown > STALLED:
                # A request lost to a socket error (a keep-alive connection the server closed
                # as wrk reused it) never reaches response(), so its thread never counts to
                # done: take what was minted, checked against `count` below.
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
        proc.send_signal(signal.SIGINT)  # wrk stops at once and prints its summary
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    minted = [Path(f"{prefix}{i}").read_text() for i in range(threads)]
    pool = workdir / "codes.txt"
    pool.write_text("".join(minted))
    for i in range(threads):
        Path(f"{prefix}{i}").unlink()
        Path(f"{prefix}{i}.done").unlink(missing_ok=True)  # missing when minting stalled
    got = sum(text.count("\n") for text in minted)
    if got < count * 0.99:  # a few lost to socket errors do not matter; more means failures
        raise SystemExit(f"minted {got} codes of {count}: some authorization requests failed")
    return pool, elapsed


_CODE_COLUMNS = (
    "code_hash, client_id, user_id, login_session_id, redirect_uri, redirect_uri_given, "
    "code_challenge, scope, nonce, auth_time, created_at, expires_at"
).split(", ")


async def clone_users(dsn: str, model: str, usernames: list[str]) -> None:
    """Users named `usernames`, each a copy of `model` (its password hash, so its password):
    the CLI would spend an argon2 hash and a process start on each."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            # username_key: users.username_key of these ASCII names, i.e. lower().
            "INSERT INTO users (id, username, username_key, password_hash, scopes, disabled,"
            " created_at)"
            # wanted.name: users has a `name` column of its own (the OIDC claim).
            " SELECT gen_random_uuid()::text, wanted.name, lower(wanted.name), password_hash,"
            " scopes, disabled, created_at"
            " FROM users, unnest($2::text[]) AS wanted(name) WHERE username = $1"
            " ON CONFLICT DO NOTHING",  # made already by an earlier step of the run
            model,
            usernames,
        )
    finally:
        await conn.close()


async def clone_codes(dsn: str, count: int, pool: Path) -> None:
    """`count` codes copied from the unused ones /authorize stored (round robin over them, so
    over their login sessions), each with a code and a PKCE pair of its own and a fresh
    lifetime, written in one COPY; `pool` gets their "code verifier" lines.

    /authorize answers a few hundred requests a second here, and a code lives 60 s: minting
    a run's worth of codes over HTTP would take longer than the first of them lives."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        templates = await conn.fetch(
            f"SELECT {', '.join(_CODE_COLUMNS)} FROM authorization_codes WHERE used_at IS NULL"
        )
        now = int(time.time())
        records, lines = [], []
        for i in range(count):
            row = dict(templates[i % len(templates)])
            code, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            row["code_hash"] = hashlib.sha256(code.encode()).hexdigest()
            row["code_challenge"] = challenge.rstrip(b"=").decode()
            row["created_at"], row["expires_at"] = now, now + CODE_TTL
            records.append(tuple(row[name] for name in _CODE_COLUMNS))
            lines.append(f"{code} {verifier}\n")
        await conn.copy_records_to_table(
            "authorization_codes", records=records, columns=_CODE_COLUMNS
        )
    finally:
        await conn.close()
    pool.write_text("".join(lines))


def code_pool_size(expected_rps: float, args: argparse.Namespace) -> int:
    """Codes for one exchange run: twice the rate expected (the same server's refresh rotation,
    measured just before; runs on this machine vary by a third) over the run, plus twice the
    connections. A run that still outlasts its pool reports the rest as errors."""
    connections: int = args.connections
    return int(expected_rps * args.duration * 2) + 2 * connections


def exchange_codes(
    base: str, token_path: str, client_id: str, pool: Path, workdir: Path, args: argparse.Namespace
) -> Measurement:
    """wrk spending each code of `pool` once at `token_path`; a run that outlasts the pool
    counts its further requests as errors (`exhausted`)."""
    script = workdir / "exchange.lua"
    script.write_text(EXCHANGE)
    prefix = "grant_type=authorization_code&" + urllib.parse.urlencode(
        {"client_id": client_id, "redirect_uri": REDIRECT_URI}
    )
    extra = [str(pool), str(args.threads), token_path, prefix]
    return wrk(f"{base}{token_path}", script, args, script_args=extra)


def rotate_tokens(
    base: str, token_path: str, client_id: str, pool: Path, workdir: Path, args: argparse.Namespace
) -> Measurement:
    """wrk spending the refresh tokens of `pool` and then each successor it is handed."""
    script = workdir / "rotate.lua"
    script.write_text(ROTATE)
    prefix = f"grant_type=refresh_token&client_id={client_id}&refresh_token="
    extra = [str(pool), str(args.threads), token_path, prefix]
    return wrk(f"{base}{token_path}", script, args, script_args=extra)


# --- ceilings measured outside the server ----------------------------------------------------


def parallel_signing_rate(alg: str, processes: int, seconds: float) -> float:
    """Signatures/s of `processes` processes signing at once, as many as the server's workers."""
    from hot_paths import signing_rate  # bench/ is on sys.path: this file runs as a script

    start_at = time.time() + 1  # once every process has made its key
    with ProcessPoolExecutor(processes) as pool:
        rates = pool.map(
            signing_rate, [alg] * processes, [seconds] * processes, [start_at] * processes
        )
        return sum(rates)


def argon2_rate(seconds: float, workers: int) -> tuple[float, int, str]:
    """Verifies/s at the server's argon2id parameters on as many threads as `workers` workers
    may hash at once; also returns the cap per worker and the parameters."""
    from argon2 import PasswordHasher, Type

    from authserver.config import load_settings

    s = load_settings({})
    threads = s.password_hash_concurrency * workers
    hasher = PasswordHasher(
        time_cost=s.argon2_time_cost,
        memory_cost=s.argon2_memory_kib,
        parallelism=s.argon2_parallelism,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def run(i: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            counts[i] += 1

    start = time.perf_counter()
    hashers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for h in hashers:
        h.start()
    for h in hashers:
        h.join()
    params = f"m={s.argon2_memory_kib} KiB, t={s.argon2_time_cost}, p={s.argon2_parallelism}"
    return sum(counts) / (time.perf_counter() - start), s.password_hash_concurrency, params


def rotate_statement() -> tuple[str, list[str]]:
    """The server's rotating statement (a token that names its family, 0030) as SQLAlchemy
    hands it to asyncpg ($n placeholders, each bind once), and the bind names in $n order."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.sql.compiler import SQLCompiler

    from authserver.db.families import _ROTATE_POSTGRES

    compiled = _ROTATE_POSTGRES.compile(dialect=PGDialect_asyncpg())  # type: ignore[no-untyped-call]
    assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
    return compiled.string, list(compiled.positiontup)


async def rotate_chains(dsn: str, chains: int, seconds: float) -> Measurement:
    """`chains` connections, each spending a token of its own family with the rotate statement
    and then the successor that statement inserted, in autocommit, for `seconds`."""
    import asyncpg

    sql, binds = rotate_statement()
    latencies: list[float] = []

    async def chain(spend: Any, family: str, token_hash: bytes, deadline: float) -> int:
        """Spends down one chain until `deadline`; 1 if the chain broke, else 0."""
        while time.perf_counter() < deadline:
            successor = secrets.token_bytes(32)  # stored as the hash's 32 bytes
            now = int(time.time())
            values = {
                "family_id": family,
                "token_hash": token_hash,
                "client_id": "app",
                "now": now,
                "new_hash": successor,
                "new_expires_at": now + MONTH,
                "jkt": None,
            }
            began = time.perf_counter()
            row = await spend.fetchrow(*(values[name] for name in binds))
            latencies.append(time.perf_counter() - began)
            if row is None:  # nothing spent, so no successor to go on with
                return 1
            token_hash = successor
        return 0

    now = int(time.time())
    families = [str(uuid.uuid4()) for _ in range(chains)]
    heads = [secrets.token_bytes(32) for _ in range(chains)]
    async with asyncpg.create_pool(dsn, min_size=chains, max_size=chains) as pool:
        user_id = await pool.fetchval("SELECT id FROM users WHERE username = 'bench'")
        await pool.executemany(  # the live token in its family's row (0030)
            "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at,"
            " token_hash, token_issued_at, token_expires_at)"
            " VALUES ($1, $2, 'app', 'profile', $3, $4, $5, $3, $4)",
            [
                (family, user_id, now, now + MONTH, head)
                for head, family in zip(heads, families, strict=True)
            ],
        )
        connections = [await pool.acquire() for _ in range(chains)]
        try:
            # Prepared before the clock starts, once per connection, as SQLAlchemy's adapter does.
            statements = [await conn.prepare(sql) for conn in connections]
            began = time.perf_counter()
            deadline = began + seconds
            broken = await asyncio.gather(
                *(
                    chain(s, family, head, deadline)
                    for s, family, head in zip(statements, families, heads, strict=True)
                )
            )
            elapsed = time.perf_counter() - began
        finally:
            for conn in connections:
                await pool.release(conn)
    latencies.sort()
    return Measurement(
        rps=len(latencies) / elapsed,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
        errors=sum(broken),
    )


def bare_jwks(workdir: Path, body: Path, args: argparse.Namespace) -> Measurement:
    """wrk against a bare Starlette app serving `body` on as many uvicorn workers as the server,
    with the server's uvicorn options."""
    (workdir / "bare_jwks.py").write_text(BARE_APP.format(path=str(body)))
    port = free_port()
    log = workdir / "bare.log"
    with log.open("wb") as sink:
        bare = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bare_jwks:app", "--app-dir", str(workdir)]
            + ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
            + ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
            + ["--no-proxy-headers", "--no-server-header"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", bare, log, args.workers)
        return wrk(f"http://127.0.0.1:{port}/.well-known/jwks.json", None, args)
    finally:
        stop(bare)


# --- one server run --------------------------------------------------------------------------


class Stack:
    """A fresh database, migrated and seeded through the CLI, and `authserver serve` on it."""

    def __init__(self, alg: str, workdir: Path, workers: int) -> None:
        self.alg = alg
        self.workers = workers
        self.workdir = workdir / alg
        self.workdir.mkdir()
        self.db = f"authserver_httpbench_{os.getpid()}_{alg.lower()}"
        self.dsn = f"postgresql://postgres@127.0.0.1:5432/{self.db}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "AUTHSERVER_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db}",
            "AUTHSERVER_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "AUTHSERVER_KEYS_DIR": str(self.workdir / "keys"),
            "AUTHSERVER_SIGNING_ALG": alg,
            "AUTHSERVER_ISSUER": self.base,
            "AUTHSERVER_PURGE_INTERVAL": "0",
            # Over http: a Secure login-session cookie would never be sent back.
            "AUTHSERVER_COOKIE_SECURE": "false",
            # wrk stands in for a proxy: the many-users login names each client's address.
            "AUTHSERVER_TRUSTED_PROXIES": "127.0.0.1",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.created = False
        self.secret = ""

    def cli(self, *argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [AUTHSERVER, *argv], env=self.env, input=stdin, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"authserver {' '.join(argv)}: {done.stderr}")
        return done.stdout.strip()

    def start(self) -> None:
        db_exec(f"CREATE DATABASE {self.db}")
        self.created = True
        self.cli("migrate")
        self.cli(
            "users", "create", "bench", "--scope", "profile", "--password-stdin", stdin=PASSWORD
        )
        self.cli(
            "clients",
            "create",
            "app",
            "--public",
            "--grant",
            "password",
            "--grant",
            "refresh_token",
            "--scope",
            "profile",
        )
        self.secret = self.cli(
            "clients", "create", "svc", "--grant", "client_credentials", "--scope", "profile"
        )
        self.cli(
            "clients",
            "create",
            "web",
            "--public",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--scope",
            "openid",
            "--scope",
            "profile",
            "--redirect-uri",
            REDIRECT_URI,
        )
        log = self.workdir / "server.log"
        with log.open("wb") as sink:
            self.server = subprocess.Popen(
                [AUTHSERVER, "serve", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        wait_ready(f"{self.base}/healthz", self.server, log, self.workers)

    def close(self) -> None:
        if self.server is not None:
            stop(self.server)
        if self.created:
            db_exec(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")

    def worker_pids(self) -> list[int]:
        assert self.server is not None
        return worker_pids(self.server.pid, self.workers)

    @property
    def basic(self) -> str:
        return basic_auth("svc", self.secret)

    def script(self, name: str, text: str) -> Path:
        path = self.workdir / f"{name}.lua"
        path.write_text(text)
        return path

    def post_script(self, name: str, body: str, basic: bool = False) -> Path:
        extra = f'wrk.headers["Authorization"] = "{self.basic}"' if basic else ""
        return self.script(name, STATIC_POST.format(body=body, extra=extra))

    def login_body(self) -> str:
        return urllib.parse.urlencode(
            {
                "grant_type": "password",
                "client_id": "app",
                "username": "bench",
                "password": PASSWORD,
            }
        )

    def refresh_pool(self, count: int) -> Path:
        """`count` refresh families, each started by a password login."""

        def login(_: int) -> str:
            answer = json.loads(http("POST", f"{self.base}/token", self.login_body()))
            return str(answer["refresh_token"])

        tokens = in_threads(login, range(count))
        path = self.workdir / "refresh_tokens.txt"
        path.write_text("\n".join(tokens) + "\n")
        return path

    def code_pool(self, count: int, args: argparse.Namespace) -> tuple[Path, str]:
        """`count` codes of the `web` client (scope openid profile): as many login sessions
        as connections, each made through the sign-in page, mint 2 codes each at /authorize
        (wrk); then clone_codes() copies those rows up to `count`. Also says how."""
        query = authorize_query("/authorize", "web", "openid profile")
        first = f"{self.base}{query}&state=s&code_challenge={'A' * 43}"
        usernames = bench_users(args.connections)
        asyncio.run(clone_users(self.dsn, "bench", usernames))
        cookies = browser_sessions(first, usernames, PASSWORD)
        minted = 2 * len(cookies)
        _, seconds = mint_codes(self.base, query, cookies, minted, self.workdir, args, "/healthz")
        pool = self.workdir / "codes.txt"
        began = time.perf_counter()
        asyncio.run(clone_codes(self.dsn, count, pool))
        how = (
            f"{minted} codes by /authorize under {len(cookies)} users' login sessions "
            f"({minted / seconds:,.0f}/s), copied in SQL to {count:,} "
            f"in {time.perf_counter() - began:.1f} s"
        )
        return pool, how


# --- the run ---------------------------------------------------------------------------------

Row = tuple[str, Measurement | None, str]


def processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def run_client_credentials(stack: Stack, args: argparse.Namespace, rows: list[Row]) -> None:
    sign = parallel_signing_rate(stack.alg, args.workers, 3)
    cc_script = stack.post_script("cc", "grant_type=client_credentials", basic=True)
    cc = wrk(f"{stack.base}/token", cc_script, args)
    rows.append(
        (
            f"client_credentials {stack.alg}",
            cc,
            f"raw {stack.alg} signing, {processes(args.workers)}: {sign:,.0f}/s",
        )
    )


def run_rotation(stack: Stack, args: argparse.Namespace, rows: list[Row]) -> Measurement:
    families = 2 * args.connections
    tokens = stack.refresh_pool(families)
    rotation = rotate_tokens(stack.base, "/token", "app", tokens, stack.workdir, args)
    chains = min(args.connections, 32)
    alone = run_on_uvloop(rotate_chains(stack.dsn, chains, args.duration))
    rows.append(
        (
            f"refresh rotation {stack.alg} ({families} families)",
            rotation,
            f"rotate statement alone, asyncpg, {chains} conns: {alone.rps:,.0f}/s",
        )
    )
    rows.append(("  (ceiling) rotate statement alone, asyncpg", alone, ""))
    return rotation


def run_code_exchange(
    stack: Stack, args: argparse.Namespace, rows: list[Row], expected_rps: float
) -> None:
    pool, how = stack.code_pool(code_pool_size(expected_rps, args), args)
    exchange = exchange_codes(stack.base, "/token", "web", pool, stack.workdir, args)
    rows.append((f"code exchange {stack.alg} (openid profile)", exchange, how))


def run_rs256(stack: Stack, args: argparse.Namespace, rows: list[Row], notes: list[str]) -> None:
    base = stack.base
    jwks_body = stack.workdir / "jwks.json"
    jwks_body.write_bytes(http("GET", f"{base}/.well-known/jwks.json"))

    # JWKS, and its ceiling: the same bytes from a bare Starlette endpoint.
    jwks = wrk(f"{base}/.well-known/jwks.json", None, args)
    ceiling = bare_jwks(stack.workdir, jwks_body, args)
    rows.append(("JWKS GET", jwks, f"bare Starlette, same JSON: {ceiling.rps:,.0f} rps"))
    rows.append(("  (ceiling) bare Starlette JWKS-sized JSON", ceiling, ""))

    run_client_credentials(stack, args, rows)

    auth = {"Authorization": stack.basic}
    access = json.loads(http("POST", f"{base}/token", "grant_type=client_credentials", auth))
    access = access["access_token"]
    intro_script = stack.post_script("introspect", f"token={access}", basic=True)
    intro = wrk(f"{base}/introspect", intro_script, args)
    rows.append(("introspection (access token)", intro, ""))

    rotation = run_rotation(stack, args, rows)
    run_code_exchange(stack, args, rows, rotation.rps)

    # Password login, with a paced JWKS probe and the workers' RSS sampled alongside.
    raw, cap, params = argon2_rate(5, args.workers)
    users = args.connections
    asyncio.run(clone_users(stack.dsn, "bench", bench_users(users)))
    password = urllib.parse.quote_plus(PASSWORD)
    login_script = stack.script("login", MANY_LOGINS.format(users=users, password=password))
    probe_script = stack.script("probe", PACED_GET.format(ms=10))
    idle = rss_kib(stack.worker_pids())
    totals, singles = [sum(idle)], [max(idle, default=0)]
    probe_result: list[Measurement] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.25):
            sizes = rss_kib(stack.worker_pids())  # asked again: a worker may have been replaced
            totals.append(sum(sizes))
            singles.append(max(sizes, default=0))

    def probe() -> None:
        time.sleep(1)  # let the logins saturate first
        probe_result.append(
            wrk(
                f"{base}/.well-known/jwks.json",
                probe_script,
                args,
                threads=1,
                connections=1,
                duration=max(args.duration - 2, 1),
            )
        )

    sampler = threading.Thread(target=sample)
    prober = threading.Thread(target=probe)
    sampler.start()
    prober.start()
    login = wrk(f"{base}/token", login_script, args)
    prober.join()
    stop_sampling.set()
    sampler.join()
    share = login.rps / raw
    threads = f"{cap * args.workers} threads ({cap}/worker x {args.workers})"
    rows.append(
        (
            f"password login, {users} users, {users} addresses",
            login,
            f"raw argon2id verify, {threads}: {raw:,.1f}/s ({share:.0%})",
        )
    )
    rows.append(("  JWKS GET, 1 conn paced 10 ms, during logins", probe_result[0], ""))
    # The throttle's own bound: one username at one address group has at most USERNAME.free + 1
    # attempts in flight.
    one_user = wrk(f"{base}/token", stack.post_script("login_one", stack.login_body()), args)
    rows.append(
        (
            "password login, 1 user, 1 address",
            one_user,
            f"{one_user.rps / raw:.0%} of raw; the user's throttle bucket admits 6 in flight",
        )
    )
    notes.append(
        f"argon2id parameters: {params}, server cap {cap} concurrent hashes per worker "
        f"x {args.workers} workers"
    )
    mib = 1024
    if args.workers == 1:
        notes.append(
            f"worker RSS (the one server process): {totals[0] / mib:.0f} MiB idle before "
            f"logins, peak {max(totals) / mib:.0f} MiB under login load (sampled every 0.25 s)"
        )
    else:
        notes.append(
            f"worker RSS, summed over the {args.workers} workers (children of the uvicorn parent; "
            f"the parent and the resource tracker not counted): {totals[0] / mib:.0f} MiB idle "
            f"before logins, peak {max(totals) / mib:.0f} MiB under login load, largest single "
            f"worker {max(singles) / mib:.0f} MiB (sampled every 0.25 s)"
        )


def run_eddsa(stack: Stack, args: argparse.Namespace, rows: list[Row]) -> None:
    run_client_credentials(stack, args, rows)
    rotation = run_rotation(stack, args, rows)
    run_code_exchange(stack, args, rows, rotation.rps)


def profile(stack: Stack, args: argparse.Namespace, target: str) -> None:
    """py-spy on one worker during one wrk run of `target`; prints where the CPU goes."""
    base = stack.base
    if target == "rotation":
        tokens = stack.refresh_pool(2 * args.connections)
        script: Path | None = stack.script("rotate", ROTATE)
        prefix = "grant_type=refresh_token&client_id=app&refresh_token="
        url, extra = f"{base}/token", [str(tokens), str(args.threads), "/token", prefix]
    elif target == "code_exchange":
        # Codes for twice the run at 2,500/s: more than any exchange rate seen here.
        codes, _ = stack.code_pool(int(2_500 * args.duration * 2), args)
        script = stack.script("exchange", EXCHANGE)
        prefix = "grant_type=authorization_code&" + urllib.parse.urlencode(
            {"client_id": "web", "redirect_uri": REDIRECT_URI}
        )
        url, extra = f"{base}/token", [str(codes), str(args.threads), "/token", prefix]
    elif target == "client_credentials":
        script = stack.post_script("cc", "grant_type=client_credentials", basic=True)
        url, extra = f"{base}/token", []
    else:
        script, url, extra = None, f"{base}/.well-known/jwks.json", []
    pid = stack.worker_pids()[0]
    raw = stack.workdir / "profile.txt"
    spy = subprocess.Popen(
        [str(VENV_BIN / "py-spy"), "record", "-f", "raw", "-r", "200", "-o", str(raw)]
        + ["--threads", "-d", str(int(args.duration)), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    result = wrk(url, script, args, script_args=extra)
    spy.wait()
    if args.workers == 1:
        print(f"profiled: the server process (pid {pid})")
    else:
        print(
            f"profiled: worker pid {pid}, 1 of {args.workers} "
            f"(it serves about 1/{args.workers} of the requests)"
        )
    print(f"{target}: {result.rps:,.0f} rps while profiled (py-spy -r 200, idle excluded)")
    by_thread: dict[str, int] = {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        # --threads puts "thread (TID): NAME" first: the event loop is MainThread; the
        # others (log writer, AnyIO pool, uvicorn's supervisor pong) sometimes show as busy.
        thread, *frames = stack_text.split(";")
        thread = thread.partition(": ")[2]
        by_thread[thread] = by_thread.get(thread, 0) + count
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames] or ["(no Python frame)"]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    threads = sorted(by_thread.items(), key=lambda kv: -kv[1])
    print("samples by thread: " + ", ".join(f"{name} {n / total:.1%}" for name, n in threads))
    print(f"{total} samples; self time, top 25:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {count / total:6.1%}  {frame}")
    print("inclusive time, top 40:")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:40]:
        print(f"  {count / total:6.1%}  {frame}")


def print_rows(rows: list[Row]) -> None:
    print(f"{'endpoint':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  ceiling")
    for name, r, ceiling in rows:
        if r is None:
            print(f"{name:<44} {'-':>8} {'-':>8} {'-':>8} {'-':>7}  {ceiling}")
        else:
            print(
                f"{name:<44} {r.rps:>8,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
                f"{r.errors:>7}  {ceiling}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="uvicorn workers of the server, and of every ceiling (default: one per core)",
    )
    parser.add_argument("--only", choices=["RS256", "EdDSA"], help="one algorithm only")
    parser.add_argument(
        "--profile",
        choices=["rotation", "code_exchange", "client_credentials", "jwks"],
        help="instead of the benchmark: py-spy one worker under this load (--profile-alg)",
    )
    parser.add_argument("--profile-alg", choices=["RS256", "EdDSA"], default="RS256")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    sys.path.insert(0, str(ROOT))

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"uvicorn speed extras: {ensure_speedups()}")
    for line in machine():
        print(line)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    workers = f"{args.workers} uvicorn worker{'s' if args.workers > 1 else ''}"
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{int(args.duration)}s per run; "
        f"{workers} (serve --workers {args.workers}; the ceilings sized to match); "
        "wrk, server and Postgres share the cores"
    )
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="authserver-httpbench-") as tmp:
            stack = Stack(args.profile_alg, Path(tmp), args.workers)
            try:
                stack.start()
                profile(stack, args, args.profile)
            finally:
                stack.close()
        return
    rows: list[Row] = []
    notes: list[str] = []
    runs: list[tuple[str, Callable[[Stack], None]]] = [
        ("RS256", lambda s: run_rs256(s, args, rows, notes)),
        ("EdDSA", lambda s: run_eddsa(s, args, rows)),
    ]
    with tempfile.TemporaryDirectory(prefix="authserver-httpbench-") as tmp:
        for alg, run in runs:
            if args.only and alg != args.only:
                continue
            stack = Stack(alg, Path(tmp), args.workers)
            try:
                stack.start()
                run(stack)
            finally:
                stack.close()
    print()
    print_rows(rows)
    for note in notes:
        print(note)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
