"""Fetching a client ID metadata document: one https GET to an address checked first.

draft-ietf-oauth-client-id-metadata-document §6 (security considerations): the server fetches
a URL anyone may name, so it must not become a way into the network it sits in (SSRF). The
host is resolved once; every address it resolves to must be public (not private, loopback,
link-local, reserved, multicast or unspecified; an IPv4 address inside IPv6 — mapped, 6to4,
Teredo — is judged as that IPv4 address) unless the host is allow-listed; the connection then
goes to the address that was checked, with TLS SNI, certificate check and `Host` naming the
host. There is no second DNS lookup a rebinding DNS server could answer differently.

No redirects (a redirect could lead anywhere, and the document's URL is its identity), no proxy
from the environment (it would make the address check moot), at most MAX_BYTES (reading stops
past it), TIMEOUT seconds for the whole of it, DNS included. TLS trusts the system's CA bundle,
or the file SSL_CERT_FILE names (OpenSSL's default paths, read at each fetch).

Every refusal is a FetchRefused whose `reason` a client's developer can act on and which names
no address; the `detail` (for the log) may.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx

MAX_BYTES = 5 * 1024
TIMEOUT = 5.0
# Fetches one process makes at once. Anyone can name a URL, so without a bound a burst of
# /authorize requests naming slow documents would hold as many outgoing connections and
# tasks. A fresh document needs no fetch, so clients already seen are not held up.
MAX_IN_FLIGHT = 16
_in_flight = 0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Fetched:
    body: bytes
    headers: tuple[tuple[str, str], ...]  # names in lower case


class FetchRefused(Exception):
    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


async def fetch_document(url: str, allow_hosts: tuple[str, ...]) -> Fetched:
    """The document at `url` (an https URL checked by documents.check_url): its body and
    headers, after a 200. Raises FetchRefused."""
    global _in_flight
    if _in_flight >= MAX_IN_FLIGHT:
        raise FetchRefused("Too many client metadata documents are being fetched; try again.")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or 443
    _in_flight += 1  # one event loop per process: no lock needed between check and count
    try:
        with anyio.fail_after(TIMEOUT):
            address = await checked_address(host, port, host in allow_hosts)
            return await _get(url, host, address)
    except TimeoutError:
        raise FetchRefused(
            f"The client's metadata document was not fetched within {TIMEOUT:g} seconds."
        ) from None
    finally:
        _in_flight -= 1


async def checked_address(host: str, port: int, allowed: bool) -> IPAddress:
    """The address to connect to: `host` resolved, every answer checked."""
    try:
        answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchRefused(
            "The host of the client's metadata document URL does not resolve.", str(exc)
        ) from None
    addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
    if not addresses:
        raise FetchRefused("The host of the client's metadata document URL does not resolve.")
    refused = [address for address in addresses if not public(address)]
    if refused and not allowed:
        # One non-public answer refuses the host: which answer a connection would use is
        # the resolver's choice, not ours.
        raise FetchRefused(
            "The host of the client's metadata document URL resolves to a private, loopback,"
            " link-local or otherwise non-public address.",
            f"{host} resolves to {refused[0]}",
        )
    return addresses[0]


def public(address: IPAddress) -> bool:
    """A globally reachable unicast address (IANA special-purpose registries: `is_global`)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if inner is not None and not public(inner):
            return False
    return address.is_global and not address.is_multicast


async def _get(url: str, host: str, address: IPAddress) -> Fetched:
    parts = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    target = parts._replace(netloc=f"{literal}:{parts.port or 443}").geturl()
    # OpenSSL's default verify paths: the system bundle, or SSL_CERT_FILE when set.
    context = ssl.create_default_context()
    headers = {
        "Host": parts.netloc.lower(),
        "Accept": "application/json",
        # Bytes as sent, so MAX_BYTES bounds what is read, not what a decompressor makes.
        "Accept-Encoding": "identity",
    }
    client = httpx.AsyncClient(verify=context, trust_env=False, follow_redirects=False)
    try:
        async with (
            client,
            client.stream(
                "GET", target, headers=headers, extensions={"sni_hostname": host}
            ) as response,
        ):
            return await _read(response)
    except httpx.HTTPError as exc:
        raise FetchRefused(
            "The client's metadata document could not be fetched (connection or TLS failed).",
            f"{type(exc).__name__}: {exc}",
        ) from None


async def _read(response: httpx.Response) -> Fetched:
    status = response.status_code
    if 300 <= status < 400:
        raise FetchRefused(
            f"The client's metadata document URL answered a redirect ({status}); redirects"
            " are not followed."
        )
    if status != 200:
        raise FetchRefused(f"The client's metadata document URL answered HTTP {status}.")
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        raise FetchRefused("The client's metadata document must be sent without compression.")
    too_large = FetchRefused(f"The client's metadata document is larger than {MAX_BYTES} bytes.")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_BYTES:
            raise too_large  # the rest is not read: the connection is closed
    headers = tuple((name.lower(), value) for name, value in response.headers.multi_items())
    return Fetched(bytes(body), headers)
