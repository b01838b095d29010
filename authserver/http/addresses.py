"""The client's address, for login throttling.

The socket's peer, unless that peer is a configured trusted proxy: then X-Forwarded-For is read
from the right, skipping trusted proxies, and the first address not among them is the client.
Anything left of it was written by the client itself and proves nothing.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from authserver.config import IPNetwork


def client_address(request: Request, trusted: tuple[IPNetwork, ...]) -> str | None:
    peer = request.client.host if request.client else None
    if peer is None or not trusted or not _trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
    ]
    client = peer
    for hop in reversed(hops):
        if _address(hop) is None:
            break  # a malformed hop: nothing to its left can be believed
        client = hop
        if not _trusted(hop, trusted):
            break
    return client


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(text: str, trusted: tuple[IPNetwork, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in trusted)
