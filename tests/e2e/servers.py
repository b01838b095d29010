"""The processes and servers the browser test talks to, each on its own loopback port.

- authserver: the real command line (`migrate`, `users create`, `clients create`, `serve`) in
  subprocesses, on a temporary SQLite database, as the README tells a person to run it.
- the SPA: examples/spa/ served as static files, with its config.js pointing at the others;
  twice, on two ports, as two clients of one authserver (single sign-on between them).
- the API: examples/service/app.py when it is there, else a stand-in with the same shape
  (`create_app(verifier, cors_origins)` serving GET /api/me); both verify with authserver_verify.
- a foreign site: pages that try to use the refresh cookie from an origin authserver does not allow.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authserver_verify import Verifier
from authserver_verify.dpop import Nonces
from authserver_verify.starlette import BearerAuthMiddleware

ROOT = Path(__file__).resolve().parents[2]
SPA_DIR = ROOT / "examples" / "spa"
SERVICE_APP = ROOT / "examples" / "service" / "app.py"
CLIENT_ID = "my-spa"
SECOND_CLIENT_ID = "my-other-spa"
USERNAME = "alice"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Static(_Quiet):
    """Files from a directory, some paths overridden with generated text."""

    overrides: dict[str, tuple[str, str]] = {}  # path -> (content type, body)

    def do_GET(self) -> None:
        found = self.overrides.get(self.path.split("?")[0])
        if found is None:
            super().do_GET()
            return
        content_type, body = found
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def static_server(directory: Path, overrides: dict[str, tuple[str, str]]) -> Iterator[int]:
    """Serves `directory` on 127.0.0.1; yields the port."""
    handler = type("Handler", (_Static,), {"overrides": overrides})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass(frozen=True)
class Spa:
    """One copy of the SPA: a client of authserver served from its own origin."""

    client_id: str
    origin: str
    dpop: bool = True  # config.dpop: tokens bound to the page's key (examples/spa/dpop.js)

    @property
    def redirect_uri(self) -> str:
        return self.origin + "/"

    def config(self, authserver: str, api: str) -> str:
        """config.js for this copy (the shape of examples/spa/config.js)."""
        fields = {
            "authserver": authserver,
            "clientId": self.client_id,
            "redirectUri": self.redirect_uri,
            "scope": "openid profile",
            "api": api,
            "dpop": self.dpop,
        }
        return f"export default {json.dumps(fields)};\n"


@dataclass
class AuthServer:
    url: str
    database: Path
    cli: Callable[..., None]  # `authserver ARGS...` on the server's database and settings

    def state(self) -> tuple[int, int, int]:
        """(refresh tokens issued, spent, families revoked), read from the database itself."""
        with sqlite3.connect(self.database) as db:
            # The live ones and the ones spent last in their families' rows, the spent ones
            # before apart (0030).
            live, last = db.execute(
                "SELECT count(token_hash), count(parent_hash) FROM refresh_families"
            ).fetchone()
            (before,) = db.execute("SELECT count(*) FROM spent_refresh_tokens").fetchone()
            spent = last + before
            tokens = live + spent
            (revoked,) = db.execute("SELECT count(revoked_at) FROM refresh_families").fetchone()
        return tokens, spent, revoked


@contextmanager
def authserver(
    workdir: Path,
    spas: list[Spa],
    extra_env: dict[str, str] | None = None,
    user_flags: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    before_serve: tuple[tuple[str, ...], ...] = (),
) -> Iterator[AuthServer]:
    """`authserver serve` in a subprocess, with a user and each SPA's cookie client (code flow,
    its page as redirect and post-logout URI) made by the command line first; stopped (and
    waited for) afterwards. `host` names the issuer's host (`localhost` for passkeys: an IP
    address is no WebAuthn RP ID); the server listens on 127.0.0.1 either way. `extra_env`: more
    settings (mail, sign-up); `user_flags`: more of `users create`'s flags for the user
    (`--email`, say); `before_serve`: more command lines run before `serve` starts (`keys
    rotate --force`: a running server would see it only at its next reload)."""
    port = free_port()
    url = f"http://{host}:{port}"
    database = workdir / "authserver.db"
    env = {
        **os.environ,
        "AUTHSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "AUTHSERVER_ISSUER": url,
        "AUTHSERVER_KEYS_DIR": str(workdir / "keys"),
        "AUTHSERVER_ALLOWED_ORIGINS": ",".join(spa.origin for spa in spas),
        # Plain http on loopback: the cookie is `authserver_rt`, without Secure.
        "AUTHSERVER_COOKIE_SECURE": "false",
        "AUTHSERVER_ARGON2_TIME_COST": "1",
        "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
        "AUTHSERVER_ARGON2_PARALLELISM": "1",
        **(extra_env or {}),
    }
    env.pop("AUTHSERVER_KEY_ENCRYPTION_KEY", None)  # made in keys/ on first start

    def cli(*args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [sys.executable, "-m", "authserver", *args],
            env=env, input=stdin, text=True, check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    cli("migrate")
    cli(
        "users", "create", USERNAME, "--scope", "profile", *user_flags, "--password-stdin",
        stdin=PASSWORD,
    )  # fmt: skip
    for spa in spas:
        cli(
            "clients", "create", spa.client_id, "--public", "--grant", "authorization_code",
            "--grant", "refresh_token", "--scope", "openid", "--scope", "profile",
            "--refresh-delivery", "cookie", "--redirect-uri", spa.redirect_uri,
            "--post-logout-redirect-uri", spa.redirect_uri,
        )  # fmt: skip
    for command in before_serve:
        cli(*command)
    log = workdir / "authserver.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "authserver", "serve", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        _wait_until(lambda: _answers(f"{url}/readyz"), process, log)
        yield AuthServer(url, database, cli)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"authserver exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("authserver did not become ready within 60 s")
        time.sleep(0.1)


def _stand_in_api(
    verifier: Verifier, cors_origins: list[str], dpop_nonces: Nonces | None = None
) -> Starlette:
    """The shape of examples/service's create_app, for when that example is not there."""

    async def me(request: Request) -> Response:
        claims = request.state.claims
        return JSONResponse({"sub": claims["sub"], "scope": claims.get("scope", "")})

    return Starlette(
        routes=[Route("/api/me", me)],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=cors_origins,
                allow_methods=["GET"],
                allow_headers=["Authorization", "DPoP"],
                expose_headers=["DPoP-Nonce"],
            ),
            Middleware(BearerAuthMiddleware, verifier=verifier, dpop_nonces=dpop_nonces),
        ],
    )


def api_factory() -> Callable[[Verifier, list[str], Nonces | None], Starlette]:
    if not SERVICE_APP.exists():
        return _stand_in_api
    spec = importlib.util.spec_from_file_location("example_service", SERVICE_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory: Callable[[Verifier, list[str], Nonces | None], Starlette] = module.create_app
    return factory


@contextmanager
def api(issuer: str, spa_origins: list[str], nonces: Nonces | None = None) -> Iterator[str]:
    """The protected API under uvicorn in a thread; yields the URL of GET /api/me. `nonces`:
    DPoP proofs must carry one of them (RFC 9449 §9)."""
    verifier = Verifier(issuer, "authserver-api")
    app = api_factory()(verifier, spa_origins, nonces)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the example API did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/api/me"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        verifier.close()


def foreign_pages(authserver: str) -> dict[str, tuple[str, str]]:
    """Pages of a site authserver does not allow, each trying to use the refresh cookie (or
    the login session's)."""
    refresh = f"{authserver}/refresh"
    script = f"""
        window.attempts = (async () => {{
          const body = () => new URLSearchParams({{ client_id: {CLIENT_ID!r} }});
          const seen = [];
          for (const mode of ["cors", "no-cors"]) {{
            try {{
              const r = await fetch({refresh!r}, {{
                method: "POST", mode, credentials: "include", body: body() }});
              seen.push({{ mode, type: r.type, status: r.status, text: await r.text() }});
            }} catch (error) {{
              seen.push({{ mode, error: String(error) }});
            }}
          }}
          return seen;
        }})();
    """
    html = "text/html; charset=utf-8"
    return {
        "/fetch.html": (html, "<!doctype html><title>evil</title><script src=fetch.js></script>"),
        "/fetch.js": ("text/javascript", script),
        "/form.html": (
            html,
            "<!doctype html><title>evil</title>"
            f'<form method=post action="{refresh}">'
            f'<input type=hidden name=client_id value="{CLIENT_ID}"></form>',
        ),
        # Logout CSRF: a top-level navigation carries the SameSite=Lax login-session cookie.
        "/sign-out.html": (
            html,
            "<!doctype html><title>evil</title>"
            f'<a id=go href="{authserver}/end-session?client_id={CLIENT_ID}">win a prize</a>',
        ),
        # The same by a form post (RP-Initiated Logout allows POST): the Lax cookie stays home.
        "/sign-out-form.html": (
            html,
            "<!doctype html><title>evil</title>"
            f'<form method=post action="{authserver}/end-session">'
            f'<input type=hidden name=client_id value="{CLIENT_ID}">'
            "<button id=go>win a prize</button></form>",
        ),
    }
