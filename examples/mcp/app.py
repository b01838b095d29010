"""A small MCP server protected by authserver: one tool, `add`, over MCP's Streamable HTTP.

    AUTHSERVER_ISSUER=http://127.0.0.1:8000 MCP_RESOURCE=http://127.0.0.1:8002/mcp \
        python examples/mcp/app.py        # serves http://127.0.0.1:8002/mcp

The server is the official MCP Python SDK's (`pip install mcp`); authserver's verifier kit
guards it with a `ProtectedResource` declaration: the service publishes its RFC 9728 metadata
at /.well-known/oauth-protected-resource/mcp (which names the issuer, so an MCP client can
discover where to get a token), every 401 names that document, and only tokens whose `aud` is
MCP_RESOURCE and that hold `tools.call` pass (RFC 8707: a token for another API is refused
here). The SDK's own auth stays off: the kit is the one that checks tokens. See README.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from authserver_verify import ProtectedResource
from authserver_verify.starlette import BearerAuthMiddleware

SCOPE = "tools.call"


def mcp_server() -> MCPServer:
    server: MCPServer = MCPServer("authserver-example-mcp", version="0.2.0")

    @server.tool()
    def add(a: float, b: float) -> str:
        """Adds two numbers."""
        return f"{a + b:g}"

    return server


def create_app(resource: ProtectedResource) -> Starlette:
    """The MCP endpoint at the resource's path, its tokens verified by `resource.verifier()`."""
    public = urlsplit(resource.resource)
    app = mcp_server().streamable_http_app(
        streamable_http_path=public.path or "/",
        # One JSON answer per request and no session to keep: any instance answers any call.
        stateless_http=True,
        json_response=True,
        # The SDK's DNS-rebinding guard: the Host a client may call it by is the resource's.
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[public.netloc],
            allowed_origins=[f"{public.scheme}://{public.netloc}"],
        ),
    )
    # Serves the metadata, names it in 401s, checks `aud` is the resource and the scope.
    app.add_middleware(
        BearerAuthMiddleware,
        resource=resource,
        public_url=f"{public.scheme}://{public.netloc}",
        required_scopes=(SCOPE,),
    )
    return app


def resource_from_env(env: Mapping[str, str]) -> ProtectedResource:
    return ProtectedResource(
        env.get("MCP_RESOURCE", "http://127.0.0.1:8002/mcp"),
        env.get("AUTHSERVER_ISSUER", "http://127.0.0.1:8000"),
        scopes_supported=(SCOPE,),
        resource_name=env.get("MCP_RESOURCE_NAME", "Example MCP server"),
    )


def app_from_env(env: Mapping[str, str] = os.environ) -> Starlette:
    return create_app(resource_from_env(env))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app_from_env(),
        host=os.environ.get("MCP_HOST", "127.0.0.1"),
        port=int(os.environ.get("MCP_PORT", "8002")),
    )
