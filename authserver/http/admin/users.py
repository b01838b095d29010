"""/admin/users: the operator lifecycle of users."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import admin
from authserver.actions.admin import users as admin_users
from authserver.http.admin import json_object, paging
from authserver.http.context import services
from authserver.http.forms import bearer_token
from authserver.http.responses import no_content, no_store_json


async def create_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    created = await admin_users.create_user(found, actor, await json_object(request))
    return no_store_json({"sub": created.sub, "username": created.username}, 201)


async def logout_user_everywhere(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin_users.logout_user_everywhere(found, actor, request.path_params["sub"])
    return no_content()


async def disable_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin_users.disable_user(found, actor, request.path_params["sub"])
    return no_content()


async def list_users(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    limit, after = paging(request, {"limit", "after", "username"})
    prefix = request.query_params.get("username", "")
    page = await admin_users.list_users(found, limit, after, prefix)
    return no_store_json({"users": page.items, "next_after": page.next_after})


async def show_user(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json(await admin_users.show_user(found, request.path_params["sub"]))


async def update_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await json_object(request)
    return no_store_json(
        await admin_users.update_user(found, actor, request.path_params["sub"], body)
    )


async def set_password(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    body = await json_object(request)
    await admin_users.set_password(found, actor, request.path_params["sub"], body)
    return no_content()


async def delete_user(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin_users.delete_user(found, actor, request.path_params["sub"])
    return no_content()
