"""GET /healthz (the process answers) and GET /readyz (it can do its job)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authserver.errors import TemporarilyUnavailable

READINESS_TIMEOUT = 1.0  # seconds: the default timeoutSeconds of a Kubernetes probe


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    ready = request.app.state.readiness
    try:
        # A probe must answer in time even when the database host has stopped answering.
        async with asyncio.timeout(READINESS_TIMEOUT):
            await ready()
    except Exception as exc:  # any failure means "not ready", whatever its cause
        # Logged by http/errors.py (a 5xx: as a warning); the cause never leaves the server.
        raise TemporarilyUnavailable(
            "Not ready to serve.", detail=f"not ready: {type(exc).__name__}"
        ) from None
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
