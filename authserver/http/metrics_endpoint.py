"""GET /metrics: the Prometheus text exposition of authserver/metrics.py, merged over every
worker when `serve` runs several (authserver/multiprocess_metrics.py)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from authserver.multiprocess_metrics import scraped_registry


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(scraped_registry()), media_type=CONTENT_TYPE_LATEST)
