"""A protected resource declared by the service that guards it (RFC 9728).

    resource = ProtectedResource(
        "https://mcp.example.com/mcp",          # the identifier registered at the issuer
        "https://auth.example.com",             # the issuer
        scopes_supported=("tools.read", "tools.call"),
        resource_name="Example MCP server",
    )
    verifier = resource.verifier()              # audience = the resource identifier

`authserver_verify.starlette.BearerAuthMiddleware(..., resource=resource)` then serves
`resource.metadata()` at `resource.well_known_paths()` and adds
`resource_metadata="<resource.metadata_url>"` to every 401 challenge (RFC 9728 §5.1).
No web framework here: the document and its URL only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authserver_verify.dpop import DEFAULT_ALGS
from authserver_verify.verifier import Verifier

__all__ = ["WELL_KNOWN", "ProtectedResource"]

WELL_KNOWN = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class ProtectedResource:
    """`resource`: the identifier, exactly as the operator registered it at the issuer (an
    https URL; http only for loopback development). `issuer`: the authorization server whose
    tokens the service verifies; `authorization_servers` defaults to it alone.

    `dpop`: whether the service accepts DPoP-bound tokens (the kit's middleware does); the
    document then names `dpop_signing_alg_values_supported`. `dpop_bound_access_tokens_required`:
    the middleware refuses every token that is not DPoP-bound (RFC 9728 §2)."""

    resource: str
    issuer: str
    scopes_supported: Sequence[str] = ()
    resource_name: str | None = None
    authorization_servers: Sequence[str] = ()
    bearer_methods_supported: Sequence[str] = ("header",)
    dpop: bool = True
    dpop_signing_alg_values_supported: Sequence[str] = tuple(sorted(DEFAULT_ALGS))
    dpop_bound_access_tokens_required: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.resource)
        # RFC 9728 §2: "a URL that uses the https scheme and has no fragment component".
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("resource must be an https URL (http only on loopback)")
        if not parts.netloc or "#" in self.resource:
            raise ValueError("resource must be an https URL without a fragment")
        if parts.query:
            # §3.1: a query component is allowed, but the metadata URL then cannot carry it
            # unambiguously; no client looks it up that way, so refuse it here.
            raise ValueError("resource must have no query component")
        if self.dpop_bound_access_tokens_required and not self.dpop:
            raise ValueError("dpop_bound_access_tokens_required needs dpop")

    @property
    def metadata_url(self) -> str:
        """RFC 9728 §3.1: the well-known string is inserted between the host and the path."""
        parts = urlsplit(self.resource)
        path = parts.path.rstrip("/")
        return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", ""))

    def well_known_paths(self) -> tuple[str, ...]:
        """The paths the service answers the document at: the path-suffixed form of §3.1 and,
        when the resource has a path, the bare §3 form (clients that ignore the path)."""
        suffixed = urlsplit(self.metadata_url).path
        return (suffixed,) if suffixed == WELL_KNOWN else (suffixed, WELL_KNOWN)

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 §2 document. Its `resource` is the identifier itself (§3.3: the client
        MUST check it is the one it asked about)."""
        document: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers or (self.issuer,)),
            "bearer_methods_supported": list(self.bearer_methods_supported),
        }
        if self.scopes_supported:
            document["scopes_supported"] = list(self.scopes_supported)
        if self.resource_name is not None:
            document["resource_name"] = self.resource_name
        if self.dpop:
            document["dpop_signing_alg_values_supported"] = list(
                self.dpop_signing_alg_values_supported
            )
            document["dpop_bound_access_tokens_required"] = self.dpop_bound_access_tokens_required
        return document

    def verifier(self, **options: Any) -> Verifier:
        """A `Verifier` for this resource's tokens: the issuer, and `aud` the identifier.
        `options` are `Verifier`'s keyword arguments (revocation feed, caches, fetch)."""
        return Verifier(self.issuer, self.resource, **options)
