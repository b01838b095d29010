"""The console's keys page and its forms: the admin API's key use cases (actions/admin/keys),
the operator as actor. A rotation refused because the next key is still young (KeyNotReady)
is not an error here: the page shows how long to wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.actions.admin import keys as admin_keys
from authserver.actions.console.operator import Operator, operator, recent_operator, renew
from authserver.keys.lifecycle import KeyNotReady, UnknownKey
from authserver.services import Services

# The ring's states in the order a key moves through them (keys/lifecycle.py's diagram).
STATES = ("next", "active", "retired", "revoked")


@dataclass(frozen=True)
class KeysPage:
    operator: Operator
    keys: list[dict[str, Any]]
    # Seconds until the next key may sign, when a rotation was just refused for its youth.
    wait: int | None = None

    def in_state(self, state: str) -> list[dict[str, Any]]:
        return [key for key in self.keys if key["state"] == state]


async def keys_page(services: Services, cookie: str | None) -> KeysPage:
    who = await operator(services, cookie)
    return KeysPage(who, await admin_keys.list_keys(services))


async def rotate(services: Services, cookie: str | None) -> KeysPage:
    """POST /admin/keys/rotate's use case, unforced: a young next key is waited for (a
    verifier caching the JWKS may not know it yet), never promoted early from a browser."""
    who = await operator(services, cookie)
    try:
        keys = await admin_keys.rotate_keys(services, who.sub, {})
    except KeyNotReady as refused:
        return KeysPage(who, await admin_keys.list_keys(services), refused.retry_after)
    return KeysPage(who, keys)


async def key_to_revoke(services: Services, cookie: str | None, kid: str) -> KeysPage:
    """The confirmation page's: the key (404 for an unknown kid) and the operator, signed in
    recently (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    keys = [key for key in await admin_keys.list_keys(services) if key["kid"] == kid]
    if not keys:
        raise UnknownKey()
    return KeysPage(who, keys)


async def revoke(services: Services, cookie: str | None, kid: str) -> None:
    """POST /admin/keys/{kid}/revoke's use case: the key leaves the JWKS at once. The console's
    own access token may be one it signed: renewed, the operator stays signed in. Only after a
    recent sign-in (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    await admin_keys.revoke_key(services, who.sub, kid)
    await renew(services, cookie)
