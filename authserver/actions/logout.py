"""Ending sessions: logout, log out everywhere, and RFC 7009 revocation."""

from __future__ import annotations

from authserver.actions.end_sessions import end_sessions
from authserver.actions.introspection import authenticate_bearer, require_proof_of_key
from authserver.audit import AuditEvent
from authserver.clients import ClientCredentials, authenticate_client
from authserver.services import Services
from authserver.tokens.access_tokens import TokenRejected
from authserver.tokens.denylist import deny_until_expiry
from authserver.tokens.dpop import DPoPRequest
from authserver.tokens.refresh import family_revoked, parse_refresh_token


async def logout(
    services: Services,
    refresh_token: str | None,
    bearer: str | None,
    presented: DPoPRequest | None = None,
) -> None:
    """Ends the refresh token's family and denies the access token; quiet when either is dead.
    A live DPoP-bound access token needs a proof of its key (`presented`), checked first: a
    stolen one ends nothing."""
    now = services.clock()
    claims = None
    if bearer:
        try:
            claims = services.verify_any_audience(bearer)
        except TokenRejected:
            claims = None
        if claims is not None:
            await require_proof_of_key(services, claims, bearer, presented)
    if refresh_token:
        state = await services.families.find(parse_refresh_token(refresh_token))
        if state is not None:
            family = state.family
            ended = AuditEvent(
                now,
                family.user_id,
                "logout",
                family.user_id,
                {"client_id": family.client_id},
                user=family.user_id,
                family=family.id,
            )
            revoked = family_revoked(
                family.id,
                family.user_id,
                family.client_id,
                reason="logout",
                actor=family.user_id,
                now=now,
            )
            events = [ended, revoked]
            await services.families.revoke(family.id, "logout", now, events)
    if claims is not None:
        await deny_until_expiry(
            services.denylist, claims, leeway=services.settings.clock_leeway, now=now
        )


async def logout_all(
    services: Services, bearer: str | None, presented: DPoPRequest | None = None
) -> int:
    """Revokes every family of the access token's subject; returns how many were live."""
    claims = await authenticate_bearer(services, bearer, presented)
    sub = str(claims["sub"])
    # Everywhere includes the browser's single sign-on: no client signs in from it again.
    return await end_sessions(services, sub, reason="logout_all", actor=sub, now=services.clock())


async def revoke(
    services: Services, credentials: ClientCredentials, token: str, hint: str | None
) -> None:
    """RFC 7009 §2.2: unknown, invalid or already revoked tokens are answered 200 like the rest.

    So is another client's token, which is left alone: "a client cannot revoke another
    client's tokens" (API.md), and an error would tell the caller that the token is live and
    whose it is. §2.1's refusal is kept in effect (nothing is revoked), not in the answer.

    Hints are only an optimisation (§2.1), so we recognise the token by its shape instead:
    our access tokens are JWTs, our refresh tokens are not.
    """
    client = await authenticate_client(services.clients, credentials)
    now = services.clock()
    if token.count(".") == 2:
        try:
            claims = services.verify_any_audience(token)  # a resource's token too
        except TokenRejected:
            return
        if claims["client_id"] == client.client_id:
            await deny_until_expiry(
                services.denylist, claims, leeway=services.settings.clock_leeway, now=now
            )
        return
    state = await services.families.find(parse_refresh_token(token))
    if state is None or state.family.client_id != client.client_id:
        return
    family = state.family
    event = family_revoked(
        family.id,
        family.user_id,
        family.client_id,
        reason="revoked",
        actor=client.client_id,
        now=now,
    )
    await services.families.revoke(state.family.id, "revoked", now, [event])
