"""A tiny protected API: the resource server the SPA example (examples/spa/) calls.

    AUTHSERVER_ISSUER=http://127.0.0.1:8000 SERVICE_CORS_ORIGIN=http://127.0.0.1:5173 \
        python examples/service/app.py        # serves http://127.0.0.1:8001

It verifies access tokens (Bearer, or DPoP-bound with their proof) offline with the verifier
kit, authserver_verify (JWKS from the issuer's metadata) and, when SERVICE_CLIENT_ID and
SERVICE_CLIENT_SECRET are set, polls the revocation feed so a logout reaches it within
SERVICE_POLL_INTERVAL seconds. With SERVICE_DPOP_NONCE_SECRET set (at least 16 bytes, the
same on every instance) DPoP proofs must carry a nonce of this service (RFC 9449 §9). It needs
only
`pip install './verifier[starlette]' uvicorn`. See README.md beside this file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authserver_verify import Verifier
from authserver_verify.dpop import Nonces
from authserver_verify.starlette import BearerAuthMiddleware, require_scope

ORDERS = [
    {"id": "o-1001", "item": "espresso beans, 1 kg", "status": "shipped"},
    {"id": "o-1002", "item": "burr grinder", "status": "processing"},
]


async def me(request: Request) -> Response:
    """Any valid token: who the caller is, as the token says."""
    claims = request.state.claims
    return JSONResponse(
        {
            "sub": claims["sub"],
            "client_id": claims.get("client_id"),
            "scope": claims.get("scope", ""),
            "exp": claims["exp"],
        }
    )


@require_scope("orders:read")
async def orders(request: Request) -> Response:
    """Needs the orders:read scope: 403 insufficient_scope without it."""
    return JSONResponse({"sub": request.state.claims["sub"], "orders": ORDERS})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    verifier: Verifier, cors_origins: list[str], dpop_nonces: Nonces | None = None
) -> Starlette:
    """The service. `verifier` is started (revocation polling) and closed with the app.
    `dpop_nonces`: proofs must carry one of its nonces (401 `use_dpop_nonce` otherwise)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        verifier.start()
        try:
            yield
        finally:
            verifier.close()

    return Starlette(
        routes=[
            Route("/api/me", me),
            Route("/api/orders", orders),
            Route("/healthz", healthz),
        ],
        middleware=[
            # Outermost, so preflights (which carry no token) and 401/403 answers get CORS
            # headers, and the SPA can read WWW-Authenticate.
            Middleware(
                CORSMiddleware,
                allow_origins=cors_origins,
                allow_methods=["GET"],
                # DPoP: a bound token comes with its proof in a header of its own (RFC 9449).
                allow_headers=["Authorization", "DPoP"],
                # DPoP-Nonce: the SPA puts our latest nonce in its next proof (RFC 9449 §9).
                expose_headers=["WWW-Authenticate", "DPoP-Nonce"],
                max_age=600,
            ),
            Middleware(
                BearerAuthMiddleware,
                verifier=verifier,
                exempt={"/healthz"},
                dpop_nonces=dpop_nonces,
            ),
        ],
        lifespan=lifespan,
    )


def verifier_from_env(env: Mapping[str, str]) -> Verifier:
    issuer = env.get("AUTHSERVER_ISSUER", "http://127.0.0.1:8000")
    client_id = env.get("SERVICE_CLIENT_ID")
    return Verifier(
        issuer,
        env.get("SERVICE_AUDIENCE", "authserver-api"),
        revocations_url=issuer.rstrip("/") + "/revocations" if client_id else None,
        client_id=client_id,
        client_secret=env.get("SERVICE_CLIENT_SECRET"),
        poll_interval=float(env.get("SERVICE_POLL_INTERVAL", "5")),
    )


def app_from_env(env: Mapping[str, str] = os.environ) -> Starlette:
    origins = env.get("SERVICE_CORS_ORIGIN", "http://127.0.0.1:5173")
    secret = env.get("SERVICE_DPOP_NONCE_SECRET")
    nonces = Nonces([secret.encode()]) if secret else None
    cors = [o.strip() for o in origins.split(",") if o.strip()]
    return create_app(verifier_from_env(env), cors, nonces)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app_from_env(),
        host=os.environ.get("SERVICE_HOST", "127.0.0.1"),
        port=int(os.environ.get("SERVICE_PORT", "8001")),
    )
