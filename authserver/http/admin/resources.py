"""/admin/resources: the registry of resource servers (RFC 8707). The identifier in the path
is percent-encoded (`https%3A%2F%2Fapi.example`); the route takes it whole, slashes and all."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.admin import resources as admin_resources
from authserver.http.admin import admin_only, json_object, paging
from authserver.http.responses import no_content, no_store_json
from authserver.services import Services


@admin_only
async def create_resource(request: Request, found: Services, actor: str) -> Response:
    created = await admin_resources.create_resource(found, actor, await json_object(request))
    return no_store_json(created, 201)


@admin_only
async def list_resources(request: Request, found: Services, actor: str) -> Response:
    limit, after = paging(request, {"limit", "after"})
    page = await admin_resources.list_resources(found, limit, after)
    return no_store_json({"resources": page.items, "next_after": page.next_after})


@admin_only
async def show_resource(request: Request, found: Services, actor: str) -> Response:
    return no_store_json(await admin_resources.show_resource(found, _identifier(request)))


@admin_only
async def update_resource(request: Request, found: Services, actor: str) -> Response:
    body = await json_object(request)
    return no_store_json(
        await admin_resources.update_resource(found, actor, _identifier(request), body)
    )


@admin_only
async def delete_resource(request: Request, found: Services, actor: str) -> Response:
    await admin_resources.delete_resource(found, actor, _identifier(request))
    return no_content()


def _identifier(request: Request) -> str:
    identifier: str = request.path_params["resource"]
    return identifier
