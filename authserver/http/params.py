"""Every path and query value meets `inputs.storable` here, once, before any route reads it.

A NUL (`%00`) in a path parameter or a query value (`/admin/users/%00`, `?after=%00`) reached
Postgres as a 500 with a traceback: each handler would have had to remember the check, as
the body readers (http/forms.py) do. This middleware decodes the path and the query as
Starlette will and answers `400 invalid_request` (a page on the pages a person sees) when
either holds a character no store can hold, whatever the route.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from authserver.errors import InvalidRequest
from authserver.http.errors import oauth_error
from authserver.inputs import storable


class StorableParams:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _storable_params(scope):
            request = Request(scope, receive, send)
            error = InvalidRequest("The path or query contains a character not allowed.")
            response = await oauth_error(request, error)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _storable_params(scope: Scope) -> bool:
    # `path` is already percent-decoded (path parameters are cut from it); the query string is
    # decoded as starlette.requests.QueryParams does.
    if not storable(scope["path"]):
        return False
    raw: bytes = scope.get("query_string", b"")
    if not raw:  # the hot paths: nothing to decode
        return True
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return all(storable(name) and storable(value) for name, value in pairs)
