"""/admin/keys: list, rotate and revoke the signing keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.admin import keys as admin_keys
from authserver.http.admin import admin_only, json_object
from authserver.http.responses import no_store_json
from authserver.services import Services


@admin_only
async def list_keys(request: Request, found: Services, actor: str) -> Response:
    return no_store_json({"keys": await admin_keys.list_keys(found)})


@admin_only
async def rotate_keys(request: Request, found: Services, actor: str) -> Response:
    body = await json_object(request)
    # KeyNotReady (409, with its Retry-After) is rendered by http/errors.py.
    keys = await admin_keys.rotate_keys(found, actor, body)
    return no_store_json({"keys": keys})


@admin_only
async def revoke_key(request: Request, found: Services, actor: str) -> Response:
    keys = await admin_keys.revoke_key(found, actor, request.path_params["kid"])
    return no_store_json({"keys": keys})
