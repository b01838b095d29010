"""Operators' use cases: signing keys, users and clients, each audited with who did it.

Every entry point takes the actor first (who did it, for the audit trail): over HTTP the one
guard http/admin.admin_only calls `require_admin`, which answers 401 for a missing, invalid or
revoked token and 403 for a live one without the `admin` scope; from the command line, `cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.accounts.users import User
from authserver.actions.introspection import authenticate_bearer
from authserver.errors import (
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidRequest,
    NotFound,
)
from authserver.inputs import storable
from authserver.services import Services
from authserver.tokens.dpop import DPoPRequest
from authserver.tokens.scopes import ADMIN

DEFAULT_PAGE = 100
MAX_PAGE = 500


async def require_admin(
    services: Services, bearer: str | None, presented: DPoPRequest | None = None
) -> str:
    """The actor behind a live admin token: its `sub` (a user id, or a client's id). A
    DPoP-bound one comes as `Authorization: DPoP` with a proof (`presented`)."""
    claims = await authenticate_bearer(services, bearer, presented)
    scope = claims.get("scope")
    if not isinstance(scope, str) or ADMIN not in scope.split(" "):
        raise InsufficientScope(detail=f"{claims.get('sub')} lacks the admin scope")
    # A user's token (a session's: it has a sid; a client's own has none) from a sign-in
    # without a second factor; the password grant's says nothing of it, so it is refused too.
    users_token = claims.get("sid") is not None
    if services.settings.admin_requires_mfa and users_token and claims.get("acr") != "mfa":
        raise InsufficientUserAuthentication(detail=f"{claims.get('sub')}'s admin token: no mfa")
    return str(claims.get("sub") or claims["client_id"])


async def existing_user(services: Services, sub: str) -> User:
    user = await services.users.by_id(sub)
    if user is None:
        raise NotFound("No user has this sub.")
    return user


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_after: str | None


def only_known_fields(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}.")


def page_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.")
    return limit


def string_field(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} is required and must be a string.")
    if len(value) > limit:
        raise InvalidRequest(f"{name} is longer than {limit} characters.")
    if not storable(value):
        raise InvalidRequest(f"{name} contains a character not allowed.")
    return value


def string_list_field(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"{name} must be a list of strings.")
    if len(value) > 64:
        raise InvalidRequest(f"{name} has too many members.")
    if not all(storable(item) for item in value):
        raise InvalidRequest(f"{name} contains a character not allowed.")
    return list(value)


def boolean_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false.")
    return value
