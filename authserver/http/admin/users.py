"""/admin/users: the operator lifecycle of users."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.admin import users as admin_users
from authserver.http.admin import admin_only, json_object, paging
from authserver.http.responses import no_content, no_store_json
from authserver.services import Services


@admin_only
async def create_user(request: Request, found: Services, actor: str) -> Response:
    created = await admin_users.create_user(found, actor, await json_object(request))
    return no_store_json({"sub": created.sub, "username": created.username}, 201)


@admin_only
async def logout_user_everywhere(request: Request, found: Services, actor: str) -> Response:
    await admin_users.logout_user_everywhere(found, actor, request.path_params["sub"])
    return no_content()


@admin_only
async def reset_factors(request: Request, found: Services, actor: str) -> Response:
    await admin_users.reset_factors(found, actor, request.path_params["sub"])
    return no_content()


@admin_only
async def disable_user(request: Request, found: Services, actor: str) -> Response:
    await admin_users.disable_user(found, actor, request.path_params["sub"])
    return no_content()


@admin_only
async def list_users(request: Request, found: Services, actor: str) -> Response:
    limit, after = paging(request, {"limit", "after", "username"})
    prefix = request.query_params.get("username", "")
    page = await admin_users.list_users(found, limit, after, prefix)
    return no_store_json({"users": page.items, "next_after": page.next_after})


@admin_only
async def show_user(request: Request, found: Services, actor: str) -> Response:
    return no_store_json(await admin_users.show_user(found, request.path_params["sub"]))


@admin_only
async def update_user(request: Request, found: Services, actor: str) -> Response:
    body = await json_object(request)
    return no_store_json(
        await admin_users.update_user(found, actor, request.path_params["sub"], body)
    )


@admin_only
async def set_password(request: Request, found: Services, actor: str) -> Response:
    body = await json_object(request)
    await admin_users.set_password(found, actor, request.path_params["sub"], body)
    return no_content()


@admin_only
async def delete_user(request: Request, found: Services, actor: str) -> Response:
    await admin_users.delete_user(found, actor, request.path_params["sub"])
    return no_content()
