"""`authserver_verify.introspect` under its old name (see authserver/verify.py)."""

from __future__ import annotations

from authserver_verify.introspect import (
    IntrospectionUnavailable,
    Introspector,
    Post,
    urllib_post,
)

__all__ = ["IntrospectionUnavailable", "Introspector", "Post", "urllib_post"]
