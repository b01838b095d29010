"""The revocation feed: what a resource server verifying offline must refuse before `exp`.

Access tokens are verified offline, so a logout would otherwise reach services only when the
token expires. The feed lists the sessions (`sid`) revoked recently enough that some of their
access tokens may still verify, and the denied `jti`s not yet expired. Clients disabled,
deleted or re-enabled are listed with a time: their tokens issued until then are revoked. It
is bounded by what was revoked in the last access-token TTL (plus the verifiers' clock
leeway), so it stays small.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from authserver.clients import ClientCredentials, authenticate_client
from authserver.services import Services

# Seconds a verifier may keep the feed: the longest a revocation takes to reach a service
# polling at this rate (plus its poll interval).
FEED_MAX_AGE = 5


@dataclass(frozen=True)
class Feed:
    body: bytes
    etag: str
    max_age: int


async def revocation_feed(services: Services, credentials: ClientCredentials) -> Feed:
    # Only resource servers read it, and they hold client credentials: a confidential client.
    await authenticate_client(services.clients, credentials, require_confidential=True)
    settings, now = services.settings, services.clock()
    # An access token lives at most access_token_ttl after its family was revoked, and
    # verifiers accept it for clock_leeway more.
    since = now - settings.access_token_ttl - settings.clock_leeway
    found = await services.denylist.recent_revocations(since, now)
    document: dict[str, object] = {"sids": sorted(found.sids), "jtis": sorted(found.jtis)}
    if found.clients:
        # An extension of API.md's two members, present only when needed: access tokens of
        # these clients issued at or before the time given are revoked (a client disabled or
        # deleted: its client_credentials tokens have no sid to list).
        document["clients"] = dict(sorted(found.clients.items()))
    body = json.dumps(document, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Feed(body, etag, FEED_MAX_AGE)
