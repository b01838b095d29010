"""JSON responses with the caching rules of RFC 6749 §5.1: tokens and errors are never stored."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def no_store_json(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(content, status_code=status_code, headers={**NO_STORE, **(headers or {})})


def no_content() -> Response:
    return Response(status_code=204, headers=NO_STORE)
