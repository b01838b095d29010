"""Operators' use cases for the signing keys: list, rotate, revoke."""

from __future__ import annotations

from typing import Any

from authserver.config import SIGNING_ALGS
from authserver.errors import InvalidRequest
from authserver.keys.records import public_record
from authserver.services import Services


async def list_keys(services: Services) -> list[dict[str, Any]]:
    records = sorted(await services.keys.records(), key=lambda r: (r.created_at, r.kid))
    return [public_record(record) for record in records]


async def rotate_keys(services: Services, actor: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST /admin/keys/rotate with its JSON body (`alg`, `force`). Raises KeyNotReady (409,
    with its retry_after) while the next key is young, unless `force`."""
    alg, force = body.get("alg"), body.get("force", False)
    if not (alg is None or isinstance(alg, str)) or not isinstance(force, bool):
        raise InvalidRequest("alg must be a string and force true or false.")
    if alg is not None and alg not in SIGNING_ALGS:
        raise InvalidRequest(f"alg must be one of {', '.join(SIGNING_ALGS)}.")
    await services.keys.rotate(actor, alg=alg, force=force)
    return await list_keys(services)


async def revoke_key(services: Services, actor: str, kid: str) -> list[dict[str, Any]]:
    await services.keys.revoke(kid, actor)
    return await list_keys(services)
