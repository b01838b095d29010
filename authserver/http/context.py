"""What a handler needs from the app: the use cases' services."""

from __future__ import annotations

from starlette.requests import Request

from authserver.services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
