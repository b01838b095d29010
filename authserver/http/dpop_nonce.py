"""The DPoP-Nonce header (RFC 9449 §8, §9), installed only with AUTHSERVER_DPOP_NONCE=on.

Every answer to a request that carries a DPoP proof gets a fresh nonce, whatever the endpoint
and the outcome: a `use_dpop_nonce` refusal (§8: "the authorization server ... MUST include a
DPoP-Nonce header") as well as a success (§8.2: "the server MAY supply the new nonce value to
the client"), so a client never needs a second round trip while it keeps sending proofs. The
nonce is the current window's (authserver_verify.dpop.Nonces): one HMAC, no storage.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authserver.services import Services

HEADER = b"dpop-nonce"


class DPoPNonceHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(name == b"dpop" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        found: Services = scope["app"].state.services

        async def with_nonce(message: Message) -> None:
            if message["type"] == "http.response.start" and found.dpop_nonces is not None:
                nonce = found.dpop_nonces.issue(found.clock()).encode("ascii")
                headers = [*message.get("headers", []), (HEADER, nonce)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_nonce)
