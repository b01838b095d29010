"""POST /register (RFC 7591) and GET|PUT|DELETE /register/{client_id} (RFC 7592): JSON in,
JSON out, `Cache-Control: no-store` (RFC 7591 §3.2.1: the answer holds secrets)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import registration
from authserver.http.addresses import client_address
from authserver.http.admin import json_object
from authserver.http.context import services
from authserver.http.forms import bearer_token
from authserver.http.responses import no_content, no_store_json


async def register(request: Request) -> Response:
    found = services(request)
    address = client_address(request, found.settings.trusted_proxies)
    body = await json_object(request)
    created = await registration.register(found, bearer_token(request), address, body)
    return no_store_json(created, 201)


async def read(request: Request) -> Response:
    found = services(request)
    client_id = request.path_params["client_id"]
    return no_store_json(await registration.read(found, client_id, bearer_token(request)))


async def update(request: Request) -> Response:
    found = services(request)
    client_id, body = request.path_params["client_id"], await json_object(request)
    return no_store_json(await registration.update(found, client_id, bearer_token(request), body))


async def delete(request: Request) -> Response:
    found = services(request)
    await registration.remove(found, request.path_params["client_id"], bearer_token(request))
    return no_content()
