"""/admin/keys, /admin/users, /admin/clients, /admin/sessions: bearer token with scope admin
(API.md, "Admin endpoints" and "Operator lifecycle")."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authserver import admin
from authserver.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from authserver.http.context import services
from authserver.http.forms import JSON, MAX_BODY_BYTES, bearer_token
from authserver.http.responses import no_content, no_store_json
from authserver.keys.lifecycle import KeyNotReady
from authserver_verify.jose import reject_duplicate_members


async def list_keys(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json({"keys": await admin.list_keys(found)})


async def rotate_keys(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await _json_object(request)
    alg, force = body.get("alg"), body.get("force", False)
    if not (alg is None or isinstance(alg, str)) or not isinstance(force, bool):
        raise InvalidRequest("alg must be a string and force true or false.")
    try:
        keys = await admin.rotate_keys(found, actor, alg, force)
    except KeyNotReady as exc:
        # RFC 9110 §10.2.3: Retry-After in seconds.
        return no_store_json(
            {"error": exc.code, "error_description": exc.description},
            exc.status,
            {"Retry-After": str(exc.retry_after)},
        )
    return no_store_json({"keys": keys})


async def revoke_key(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    keys = await admin.revoke_key(found, actor, request.path_params["kid"])
    return no_store_json({"keys": keys})


async def create_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    created = await admin.create_user(found, actor, await _json_object(request))
    return no_store_json({"sub": created.sub, "username": created.username}, 201)


async def logout_user_everywhere(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin.logout_user_everywhere(found, actor, request.path_params["sub"])
    return no_content()


async def disable_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin.disable_user(found, actor, request.path_params["sub"])
    return no_content()


async def create_client(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    created = await admin.create_client(found, actor, await _json_object(request))
    return no_store_json(created.public_view(), 201)


async def list_clients(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    limit, after = _paging(request, {"limit", "after"})
    page = await admin.list_clients(found, limit, after)
    return no_store_json({"clients": page.items, "next_after": page.next_after})


async def show_client(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json(await admin.show_client(found, request.path_params["client_id"]))


async def update_client(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await _json_object(request)
    return no_store_json(
        await admin.update_client(found, actor, request.path_params["client_id"], body)
    )


async def rotate_client_secret(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await _json_object(request)
    rotated = await admin.rotate_client_secret(found, actor, request.path_params["client_id"], body)
    return no_store_json(
        {
            "client_id": rotated.client_id,
            "client_secret": rotated.client_secret,
            "old_secret_expires_at": rotated.old_secret_expires_at,
        }
    )


async def delete_client(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin.delete_client(found, actor, request.path_params["client_id"])
    return no_content()


async def list_users(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    limit, after = _paging(request, {"limit", "after", "username"})
    prefix = request.query_params.get("username", "")
    page = await admin.list_users(found, limit, after, prefix)
    return no_store_json({"users": page.items, "next_after": page.next_after})


async def show_user(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json(await admin.show_user(found, request.path_params["sub"]))


async def update_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await _json_object(request)
    return no_store_json(await admin.update_user(found, actor, request.path_params["sub"], body))


async def set_password(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await _json_object(request)
    await admin.set_password(found, actor, request.path_params["sub"], body)
    return no_content()


async def delete_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin.delete_user(found, actor, request.path_params["sub"])
    return no_content()


async def user_sessions(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json({"sessions": await admin.user_sessions(found, request.path_params["sub"])})


async def revoke_session(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin.revoke_session(found, actor, request.path_params["sid"])
    return no_content()


def _paging(request: Request, known: set[str]) -> tuple[int, str | None]:
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in known:
            raise InvalidRequest(f"Unknown parameter {name!r}.")
        if name in seen:
            raise InvalidRequest(f"{name} is repeated.")
        if len(value) > 256:
            raise InvalidRequest(f"{name} is too long.")
        seen[name] = value
    raw = seen.get("limit", str(admin.DEFAULT_PAGE))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= admin.MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {admin.MAX_PAGE}.")
    return int(raw), seen.get("after") or None


async def _json_object(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is an empty object. Members keep their JSON types
    (lists, booleans), unlike the token endpoint's string-only fields."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
    if not body:
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JSON:
        raise UnsupportedMediaType("Send application/json.")
    try:
        value = json.loads(bytes(body), object_pairs_hook=reject_duplicate_members)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The JSON body is malformed or repeats a member.") from None
    if not isinstance(value, dict):
        raise InvalidRequest("The JSON body must be an object.")
    return value
