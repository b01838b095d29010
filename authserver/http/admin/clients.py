"""/admin/clients: the operator lifecycle of clients."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.admin import clients as admin_clients
from authserver.http.admin import admin_only, json_object, paging
from authserver.http.responses import no_content, no_store_json
from authserver.services import Services


@admin_only
async def create_client(request: Request, found: Services, actor: str) -> Response:
    created = await admin_clients.create_client(found, actor, await json_object(request))
    return no_store_json(created.public_view(), 201)


@admin_only
async def list_clients(request: Request, found: Services, actor: str) -> Response:
    limit, after = paging(request, {"limit", "after"})
    page = await admin_clients.list_clients(found, limit, after)
    return no_store_json({"clients": page.items, "next_after": page.next_after})


@admin_only
async def show_client(request: Request, found: Services, actor: str) -> Response:
    return no_store_json(await admin_clients.show_client(found, request.path_params["client_id"]))


@admin_only
async def update_client(request: Request, found: Services, actor: str) -> Response:
    body = await json_object(request)
    return no_store_json(
        await admin_clients.update_client(found, actor, request.path_params["client_id"], body)
    )


@admin_only
async def rotate_client_secret(request: Request, found: Services, actor: str) -> Response:
    body = await json_object(request)
    rotated = await admin_clients.rotate_client_secret(
        found, actor, request.path_params["client_id"], body
    )
    return no_store_json(
        {
            "client_id": rotated.client_id,
            "client_secret": rotated.client_secret,
            "old_secret_expires_at": rotated.old_secret_expires_at,
        }
    )


@admin_only
async def delete_client(request: Request, found: Services, actor: str) -> Response:
    await admin_clients.delete_client(found, actor, request.path_params["client_id"])
    return no_content()
