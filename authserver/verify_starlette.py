"""`authserver_verify.starlette` under its old name (see authserver/verify.py)."""

from __future__ import annotations

from authserver_verify.starlette import (
    BearerAuthMiddleware,
    Endpoint,
    authenticate,
    require_active,
    require_scope,
)

__all__ = ["BearerAuthMiddleware", "Endpoint", "authenticate", "require_active", "require_scope"]
