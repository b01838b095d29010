"""The security headers every response carries, errors and preflights included.

They are added by the outermost middleware (http/observe.py) as it starts each response, so
they land on CORS preflights and on its own 500 answer too.
"""

from __future__ import annotations

from authserver.config import Settings

# RFC 6797 §6.1: HSTS over https only; two years is the preload list's floor.
HSTS = "max-age=63072000; includeSubDomains"

RawHeaders = list[tuple[bytes, bytes]]


def security_headers(settings: Settings) -> RawHeaders:
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
    if settings.issuer.startswith("https://"):
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers


def with_headers(
    headers: RawHeaders, extra: RawHeaders, names: frozenset[bytes] | None = None
) -> RawHeaders:
    """`headers` plus each of `extra` whose name the response has not set itself. `names`,
    the names of `extra` when the caller knows them, spares a set per call: almost no
    response sets one, and then `extra` is appended whole."""
    if names is not None and not any(name.lower() in names for name, _ in headers):
        return [*headers, *extra]
    present = {name.lower() for name, _ in headers}
    return [*headers, *(item for item in extra if item[0] not in present)]
