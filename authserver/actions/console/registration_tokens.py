"""The console's registration tokens: RFC 7591 initial access tokens for
AUTHSERVER_REGISTRATION=token, made by the same use case as `authserver clients
registration-token` (actions/registration.py), the operator as actor, shown once."""

from __future__ import annotations

from dataclasses import dataclass

from authserver.actions import registration
from authserver.actions.console.operator import Operator, operator, recent_operator
from authserver.errors import NotFound
from authserver.registration import InitialAccessToken
from authserver.services import Services

# The CLI's defaults: a day, one registration.
DEFAULT_TTL = 86_400
DEFAULT_USES = 1


@dataclass(frozen=True)
class TokenForm:
    operator: Operator
    mode: str  # AUTHSERVER_REGISTRATION: the page says when tokens do nothing (not "token")
    tokens: list[InitialAccessToken]  # those that still register, newest first
    ttl: int = DEFAULT_TTL
    uses: int = DEFAULT_USES


@dataclass(frozen=True)
class Made:
    operator: Operator
    token: str  # shown once, only its hash stored
    expires_at: int
    uses: int | None


async def token_form(services: Services, cookie: str | None) -> TokenForm:
    who = await operator(services, cookie)
    tokens = await registration.live_initial_tokens(services)
    return TokenForm(who, services.settings.registration, tokens)


@dataclass(frozen=True)
class Asked:
    operator: Operator
    token: InitialAccessToken


async def token_to_revoke(services: Services, cookie: str | None, token_hash: str) -> Asked:
    """The confirmation page's: the operator signed in recently (StaleSignIn), the token (404
    unless it still works)."""
    who = await recent_operator(services, cookie)
    for token in await registration.live_initial_tokens(services):
        if token.token_hash == token_hash:
            return Asked(who, token)
    raise NotFound("No registration token that still works has this id.")


async def revoke_token(services: Services, cookie: str | None, token_hash: str) -> None:
    """Only after a recent sign-in (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    await registration.revoke_initial_token(services, who.sub, token_hash)


async def make_token(services: Services, cookie: str | None, form: dict[str, str]) -> Made:
    """`ttl` seconds and `uses` (empty: any number) as typed: whole numbers, else the use
    case's 400 (it checks the ranges)."""
    who = await operator(services, cookie)
    ttl = _whole(form.get("ttl", ""))
    raw_uses = form.get("uses", "").strip()
    uses = None if not raw_uses else _whole(raw_uses)
    token, expires_at = await registration.make_initial_token(services, who.sub, ttl, uses)
    return Made(who, token, expires_at, uses)


def _whole(raw: str) -> int:
    # -1 is out of every range the use case accepts: refused there, with its sentence.
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
