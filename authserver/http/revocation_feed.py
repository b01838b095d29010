"""GET /revocations: the revocation feed for resource servers (actions/revocation_feed.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.revocation_feed import revocation_feed
from authserver.http.context import services
from authserver.http.forms import client_credentials
from authserver.http.responses import etag_matches


async def revocations(request: Request) -> Response:
    feed = await revocation_feed(services(request), client_credentials(request, {}))
    headers = {
        # private: the answer depends on the client's credentials, no shared cache may keep it.
        "Cache-Control": f"private, max-age={feed.max_age}",
        "ETag": feed.etag,
        "Vary": "Authorization",
    }
    if etag_matches(request.headers.get("if-none-match"), feed.etag):
        return Response(status_code=304, headers=headers)
    return Response(feed.body, media_type="application/json", headers=headers)
