"""/admin/keys: list, rotate and revoke the signing keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import admin
from authserver.actions.admin import keys as admin_keys
from authserver.errors import InvalidRequest
from authserver.http.admin import json_object
from authserver.http.context import services
from authserver.http.forms import bearer_token
from authserver.http.responses import no_store_json


async def list_keys(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json({"keys": await admin_keys.list_keys(found)})


async def rotate_keys(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await json_object(request)
    alg, force = body.get("alg"), body.get("force", False)
    if not (alg is None or isinstance(alg, str)) or not isinstance(force, bool):
        raise InvalidRequest("alg must be a string and force true or false.")
    # KeyNotReady (409, with its Retry-After) is rendered by http/errors.py.
    keys = await admin_keys.rotate_keys(found, actor, alg, force)
    return no_store_json({"keys": keys})


async def revoke_key(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    keys = await admin_keys.revoke_key(found, actor, request.path_params["kid"])
    return no_store_json({"keys": keys})
