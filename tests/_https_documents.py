"""A real https server on 127.0.0.1 serving JSON documents (client ID metadata documents), with
a throwaway CA made for it (tests/_smtp.make_tls): its certificate names `localhost`, 127.0.0.1
and ::1, and the CA file is what the server under test is told to trust (SSL_CERT_FILE).

    with documents_server(tmp_path) as server:
        server.serve("/notes.json", {"client_id": server.url("/notes.json"), ...})
        ... server.hits["/notes.json"] ...

The standard library's http.server in a thread, wrapped by `ssl`: every answer is a real TLS
connection the fetcher must verify. A route can answer any status, headers and body, after a
delay.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests._smtp import make_tls


@dataclass
class Route:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass
class DocumentsServer:
    port: int
    ca_file: Path
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    # The Host header of each request, and the TLS server name (SNI) of each handshake.
    hosts: list[str | None] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def serve(
        self, path: str, document: Any, *, status: int = 200, delay: float = 0.0, **headers: str
    ) -> str:
        """Answers `path` with `document` (JSON unless bytes); returns its URL on localhost."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        heads = {"Content-Type": "application/json"} | {
            name.replace("_", "-"): value for name, value in headers.items()
        }
        self.routes[path] = Route(status, heads, body, delay)
        return self.url(path)


@contextmanager
def documents_server(folder: Path) -> Iterator[DocumentsServer]:
    tls = make_tls(folder, ("localhost", "127.0.0.1", "::1"))
    state: dict[str, DocumentsServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            server = state["server"]
            path = self.path
            server.hits[path] += 1
            server.hosts.append(self.headers.get("Host"))
            route = server.routes.get(path, Route(404, {}, b"{}"))
            if route.delay:
                time.sleep(route.delay)
            try:
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the fetcher stopped reading (too large, too slow)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = tls.context

    def record_server_name(_sock: Any, name: str | None, _context: Any) -> None:
        state["server"].server_names.append(name)

    context.sni_callback = record_server_name
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state["server"] = DocumentsServer(httpd.server_address[1], tls.ca_file)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
