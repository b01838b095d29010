"""A client ID metadata document read as a client, and how long it stays fresh.

draft-ietf-oauth-client-id-metadata-document: the client_id is the URL of the document; the
document's `client_id` MUST equal it; the client is public here (no shared secret can be
published), and third-party (its users are asked: consent). Members authserver does not use are
ignored and grant types it does not offer a metadata-document client are filtered out, not
refused: real clients publish both. What is kept goes through clients.check_metadata, the one
validator of every client's metadata.

Freshness follows the answer's HTTP caching headers (RFC 9111 §4.2.1: Cache-Control max-age,
else Expires minus Date; no-store and no-cache: stale at once), at most MAX_FRESH; with none
of them the document is stale at once, so the next request fetches it again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from authserver.audit import AuditEvent
from authserver.clients import Client, ClientStore, check_metadata, redirect_uri_problem
from authserver.config import Settings
from authserver.errors import InvalidClient, InvalidRequest
from authserver.metadata_documents.fetch import Fetched, FetchRefused
from authserver.tokens.scopes import ADMIN, IDENTITY_SCOPES

DOCUMENT = "document"  # Client.registration of a metadata document's client
ACTOR = "client_id_metadata"  # who the audit log says stored or changed such a client
MAX_URL = 128  # the clients table's client_id
MAX_FRESH = 86_400
# What a public client reached through a browser may use: no password grant, no machines.
GRANTS = ("authorization_code", "refresh_token")

Fetch = Callable[[str, tuple[str, ...]], Awaitable[Fetched]]


class DocumentRefused(InvalidClient):
    """invalid_client, with a reason the client's developer can act on."""


def names_document(client_id: str) -> bool:
    """Does this client_id look like a URL (so it is judged as a document's, not looked up)?"""
    return client_id.startswith(("https://", "http://"))


async def named_client(
    clients: ClientStore, fetch: Fetch, settings: Settings, client_id: str, now: int
) -> Client | None:
    """The client `client_id` names: the stored one, or, for a metadata document's URL, the
    document's client, fetched again when stale. None when unknown (or deleted). Raises
    DocumentRefused when the document cannot be had or is not acceptable."""
    stored = await clients.get(client_id)
    if not settings.client_id_metadata or not names_document(client_id):
        return stored
    if stored is not None and (stored.registration != DOCUMENT or stored.disabled):
        return stored  # an operator's client of that id; or disabled: refused without a fetch
    if stored is not None and now < (stored.document_expires_at or 0):
        return stored
    check_url(client_id)
    try:
        fetched = await fetch(client_id, settings.client_id_metadata_allow_hosts)
    except FetchRefused as exc:
        raise DocumentRefused(exc.reason, detail=exc.detail or exc.reason) from None
    client = document_client(client_id, fetched, now)
    return await clients.save_document(client, now, lambda before, after: audit(before, after, now))


def audit(before: Client | None, after: Client, now: int) -> list[AuditEvent]:
    """A document client first stored, or its redirect URIs changed by a refetch: where codes
    may be sent is what an operator looking back needs to know (the rest is in the row)."""
    if before is None:
        detail = {"registration": DOCUMENT, "redirect_uris": list(after.redirect_uris)}
        return [AuditEvent(now, ACTOR, "client.registered", after.client_id, detail)]
    if before.redirect_uris != after.redirect_uris:
        detail = {
            "redirect_uris": list(after.redirect_uris),
            "previous_redirect_uris": list(before.redirect_uris),
        }
        return [AuditEvent(now, ACTOR, "client.updated", after.client_id, detail)]
    return []


def check_url(url: str) -> None:
    """draft §3: "Client identifier URLs MUST have an "https" scheme, MUST contain a path
    component, MUST NOT contain single-dot or double-dot path segments, ... MUST NOT contain a
    fragment component and MUST NOT contain a username or password"."""
    problem = _url_problem(url)
    if problem is not None:
        raise DocumentRefused(f"A client_id URL must be {problem}.")


def _url_problem(url: str) -> str | None:
    if not url.startswith("https://"):
        return "an https URL"
    # What every client's URIs must be (printable, absolute, no fragment, no user
    # information), then what this one's must be besides.
    problem = redirect_uri_problem(url)
    if problem is not None:
        return problem
    if len(url) > MAX_URL:
        return f"at most {MAX_URL} characters"
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if len(segments) < 2 or not segments[-1] or {".", ".."} & set(segments):
        return "an https URL with a path naming the document, and no . or .. segments"
    return None


def document_client(url: str, fetched: Fetched, now: int) -> Client:
    """The document's client (raises DocumentRefused)."""
    try:
        document = json.loads(fetched.body)
    except (ValueError, UnicodeDecodeError):
        raise DocumentRefused("The client's metadata document is not JSON.") from None
    if not isinstance(document, dict):
        raise DocumentRefused("The client's metadata document is not a JSON object.")
    # draft §4.1: "the client_id property MUST be the same as the URL of the document using
    # simple string comparison".
    if document.get("client_id") != url:
        raise DocumentRefused("The client_id in the client's metadata document is not its URL.")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise DocumentRefused(
            "A metadata document's client is public here: token_endpoint_auth_method must be"
            " none (or left out)."
        )
    try:
        grants = [
            g for g in _strings(document, "grant_types", ["authorization_code"]) if g in GRANTS
        ]
        scope = document.get("scope", " ".join(IDENTITY_SCOPES))
        if not isinstance(scope, str):
            raise InvalidRequest("scope must be a space-separated string.")
        checked = check_metadata(
            url,
            True,
            grant_types=grants,
            # Never the admin scope: an operator grants it, not a document anyone can publish.
            scopes=[s for s in scope.split() if s != ADMIN],
            redirect_uris=_strings(document, "redirect_uris", []),
            post_logout_redirect_uris=_strings(document, "post_logout_redirect_uris", []),
            client_name=document.get("client_name"),
        )
    except InvalidRequest as exc:
        raise DocumentRefused(
            f"The client's metadata document is not acceptable: {exc.description}"
        ) from None
    return Client(
        client_id=url,
        secret_hash=None,
        **checked.as_fields(),
        created_at=now,
        registration=DOCUMENT,
        consent=True,
        document_expires_at=fresh_until(fetched.headers, now),
    )


def _strings(document: dict[str, Any], name: str, default: list[str]) -> list[str]:
    value = document.get(name, default)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"{name} must be an array of strings.")
    return value


def fresh_until(headers: Sequence[tuple[str, str]], now: int) -> int:
    """When the document goes stale: now + its freshness lifetime, at most MAX_FRESH."""
    return now + max(0, min(_lifetime(headers, now), MAX_FRESH))


def _lifetime(headers: Sequence[tuple[str, str]], now: int) -> int:
    directives: dict[str, str] = {}
    for name, value in headers:
        if name == "cache-control":
            for item in value.split(","):
                key, _, argument = item.strip().partition("=")
                directives.setdefault(key.strip().lower(), argument.strip().strip('"'))
    if "no-store" in directives or "no-cache" in directives:
        return 0
    age = _seconds(_header(headers, "age")) or 0
    if "max-age" in directives:
        # RFC 9111 §5.2.2.1: max-age is a delta-seconds; a malformed one is not fresh.
        return (_seconds(directives["max-age"]) or 0) - age
    expires, date = _date(_header(headers, "expires")), _date(_header(headers, "date"))
    if expires is None:
        return 0  # RFC 9111 §5.3: an invalid Expires (e.g. "0") means already expired
    return expires - (date if date is not None else now) - age


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key == name), None)


def _seconds(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None


def _date(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(parsedate_to_datetime(raw).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
