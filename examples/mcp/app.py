"""A tiny MCP-style service protected by authserver: one JSON-RPC endpoint with one tool.

    AUTHSERVER_ISSUER=http://127.0.0.1:8000 MCP_RESOURCE=http://127.0.0.1:8002/mcp \
        python examples/mcp/app.py        # serves http://127.0.0.1:8002/mcp

The verifier kit's `ProtectedResource` declares the resource: the service publishes its RFC 9728
metadata at /.well-known/oauth-protected-resource/mcp (which names the issuer, so a client can
discover where to get a token), every 401 names that document, and only tokens whose `aud` is
MCP_RESOURCE pass (RFC 8707: a token for another API is refused here). It speaks just enough
JSON-RPC 2.0 for a demo (`initialize`, `tools/list`, `tools/call`), not the whole MCP
transport. It needs only `pip install './verifier[starlette]' uvicorn`. See README.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authserver_verify import ProtectedResource
from authserver_verify.starlette import BearerAuthMiddleware, require_scope

SCOPE = "tools.call"
ADD = {
    "name": "add",
    "description": "Adds two numbers.",
    "inputSchema": {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
}


def _result(request_id: Any, result: dict[str, Any]) -> Response:
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})


def _error(request_id: Any, code: int, message: str) -> Response:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return JSONResponse(body)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _add(arguments: Any) -> dict[str, Any] | None:
    """The tool: `a + b` as MCP text content, or None when the arguments are not two numbers."""
    if not isinstance(arguments, dict):
        return None
    a, b = arguments.get("a"), arguments.get("b")
    if not (_number(a) and _number(b)):
        return None
    return {"content": [{"type": "text", "text": str(a + b)}], "isError": False}


@require_scope(SCOPE)
async def mcp(request: Request) -> Response:
    """JSON-RPC 2.0 over POST; the caller's token is verified and holds `tools.call`."""
    try:
        message = json.loads(await request.body())
    except ValueError:
        return _error(None, -32700, "Parse error")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return _error(None, -32600, "Invalid Request")
    request_id, method, params = message.get("id"), message.get("method"), message.get("params")
    if method == "initialize":
        return _result(
            request_id,
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "authserver-example-mcp", "version": "0.1.0"},
            },
        )
    if method == "tools/list":
        return _result(request_id, {"tools": [ADD]})
    if method == "tools/call":
        params = params if isinstance(params, dict) else {}
        if params.get("name") != ADD["name"]:
            return _error(request_id, -32602, "Unknown tool")
        result = _add(params.get("arguments"))
        if result is None:
            return _error(request_id, -32602, "add needs two numbers, a and b")
        return _result(request_id, result)
    return _error(request_id, -32601, "Method not found")


def create_app(resource: ProtectedResource) -> Starlette:
    """The service at the resource's path, its tokens verified by `resource.verifier()`."""
    public = urlsplit(resource.resource)
    return Starlette(
        routes=[Route(public.path or "/", mcp, methods=["POST"])],
        middleware=[
            # Serves the metadata, names it in 401s, and checks `aud` is the resource.
            Middleware(
                BearerAuthMiddleware,
                resource=resource,
                public_url=f"{public.scheme}://{public.netloc}",
            )
        ],
    )


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
