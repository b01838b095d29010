"""POST /introspect (RFC 7662)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import introspection
from authserver.http.context import services
from authserver.http.forms import client_credentials, read_fields, token_field
from authserver.http.responses import no_store_json


async def introspect(request: Request) -> Response:
    fields = await read_fields(request)
    credentials = client_credentials(request, fields)
    answer = await introspection.introspect(
        services(request), credentials, token_field(fields), fields.get("token_type_hint")
    )
    return no_store_json(answer)
