"""GET /metrics: the Prometheus text exposition of authserver/telemetry/metrics.py, merged
over every worker when `serve` runs several (authserver/telemetry/multiprocess.py)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from authserver.telemetry.multiprocess import scraped_registry


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(scraped_registry()), media_type=CONTENT_TYPE_LATEST)
