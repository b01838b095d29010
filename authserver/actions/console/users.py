"""The console's users page and its forms: the admin API's use cases, the operator as actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.actions.admin import existing_user
from authserver.actions.admin import users as admin_users
from authserver.actions.console.operator import Operator, operator
from authserver.services import Services

PAGE = 50


@dataclass(frozen=True)
class UsersPage:
    operator: Operator
    users: list[dict[str, Any]]
    next_after: str | None
    search: str


async def users_page(
    services: Services, cookie: str | None, search: str, after: str | None
) -> UsersPage:
    """Keyset paging by username (its unique index), `search` a username prefix."""
    who = await operator(services, cookie)
    page = await admin_users.list_users(services, PAGE, after, search)
    return UsersPage(who, page.items, page.next_after, search)


async def set_user_disabled(
    services: Services, cookie: str | None, sub: str, disabled: bool
) -> None:
    """Disabling ends every session of the user (POST /admin/users/{sub}/disable's use case);
    enabling is PATCH `disabled: false`'s."""
    who = await operator(services, cookie)
    if disabled:
        await existing_user(services, sub)
        await admin_users.disable_user(services, who.sub, sub)
    else:
        await admin_users.update_user(services, who.sub, sub, {"disabled": False})
