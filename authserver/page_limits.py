"""How often the pages that send mail may be asked (API.md "Throttling of the pages above"):
per client address group and, where an address is given, per address.

Fixed windows counted in the database (one UPSERT … RETURNING per bucket), so every instance
shares them. The limits: 30 requests per address group per minute (the contract: at least 20
always pass; an office behind one address asks rarely), and 5 per email address per 15 minutes
(a reset or a verification mail more often is spam for its owner). Over either, the page
answers 429 with Retry-After: the same for an address with an account and one without.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from authserver.accounts.profiles import email_key
from authserver.throttle import address_group


@dataclass(frozen=True)
class Limit:
    requests: int
    window: int  # seconds


PER_ADDRESS_GROUP = Limit(30, 60)
PER_EMAIL = Limit(5, 900)
# A passkey button costs a held challenge row per click and sends no mail: twice the pages'
# budget, so one office behind one address is not turned away.
PASSKEY_CHALLENGES = Limit(60, 60)
# Client ID metadata documents fetched for requests from one address group (a request naming a
# new or stale document's URL makes authserver fetch it): anyone may name any URL, so without a
# bound one address could make authserver fetch thousands. A sign-in through a document sent
# with no-store costs about six fetches (each page of it refetches); one with max-age, one.
DOCUMENT_FETCHES_LIMIT = Limit(60, 600)
# A bucket's count older than this counts for nothing (db/purge.py deletes it).
LONGEST_WINDOW = max(PER_ADDRESS_GROUP.window, PER_EMAIL.window, DOCUMENT_FETCHES_LIMIT.window)
# Bucket prefixes: the mail pages share one budget; client registration (POST /register,
# actions/registration.py) has its own, with the same 30 a minute per address group.
PAGES = "page"
REGISTRATION = "register"
# Passwordless passkey sign-in (POST /login/passkey/options) holds a challenge row per request
# before anyone is known, so it is limited per address group too (actions/passkeys.py).
PASSKEY = "passkey"
# Client ID metadata document fetches (actions/authorize.named_client).
DOCUMENT_FETCHES = "cimd"


class PageLimitStore(Protocol):
    async def count(self, bucket: str, window_start: int) -> int:
        """Counts one request in `bucket`'s window starting at `window_start` (a new window
        starts the count again); returns the count with it."""
        ...


async def retry_after(
    store: PageLimitStore,
    now: int,
    address: str | None,
    email: str | None = None,
    *,
    prefix: str = PAGES,
    per_address: Limit = PER_ADDRESS_GROUP,
) -> int | None:
    """None when the request may go on; else the seconds until it may be asked again."""
    buckets = []
    if address is not None:
        buckets.append((f"{prefix}:addr:" + _digest(address_group(address)), per_address))
    if email:
        buckets.append(("page:mail:" + _digest(email_key(email) or ""), PER_EMAIL))
    waits = []
    for bucket, limit in buckets:
        start = now - now % limit.window
        if await store.count(bucket, start) > limit.requests:
            waits.append(start + limit.window - now)
    return max(waits) if waits else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
