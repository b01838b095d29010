"""The console's page of a user's sessions and its forms: their signed-in browsers (login
sessions) and their apps' refresh-token families, listed as the account page and the admin API
list them; a family ended by POST /admin/sessions/{sid}/revoke's use case, a browser by the
admin use case the account page's "End" mirrors (no admin API route: API.md has none), all
of them (and every browser) by .../logout-all's, the factors reset by .../reset-factors's
(after a recent sign-in: it cannot be undone). The operator as actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.accounts.login_sessions import Browser
from authserver.actions.admin import existing_user
from authserver.actions.admin import sessions as admin_sessions
from authserver.actions.admin import users as admin_users
from authserver.actions.console.operator import Operator, operator, recent_operator
from authserver.services import Services


@dataclass(frozen=True)
class SessionsPage:
    operator: Operator
    sub: str
    username: str
    browsers: list[Browser]
    apps: list[dict[str, Any]]
    factors: list[str]


async def sessions_page(services: Services, cookie: str | None, sub: str) -> SessionsPage:
    """404 for an unknown sub."""
    who = await operator(services, cookie)
    user = await existing_user(services, sub)
    now = services.clock()
    idle = services.settings.login_session_idle_ttl
    browsers = await services.login_sessions.browsers(sub, now, idle)
    apps = await admin_sessions.user_sessions(services, sub)
    factors = await services.second_factors.kinds(sub)
    return SessionsPage(who, sub, user.username or sub, browsers, apps, factors)


async def end_session(services: Services, cookie: str | None, sid: str) -> None:
    who = await operator(services, cookie)
    await admin_sessions.revoke_session(services, who.sub, sid)


async def end_browser(services: Services, cookie: str | None, sub: str, session_id: str) -> None:
    """One signed-in browser of the user's (its login session and the apps it signed in)."""
    who = await operator(services, cookie)
    await admin_sessions.end_browser(services, who.sub, sub, session_id)


async def end_all(services: Services, cookie: str | None, sub: str) -> None:
    who = await operator(services, cookie)
    await admin_users.logout_user_everywhere(services, who.sub, sub)


async def confirm_reset(services: Services, cookie: str | None, sub: str) -> SessionsPage:
    """The confirmation page's: the user (404 if unknown), the operator signed in recently."""
    await recent_operator(services, cookie)
    return await sessions_page(services, cookie, sub)


async def reset_factors(services: Services, cookie: str | None, sub: str) -> None:
    """Only after a recent sign-in (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    await admin_users.reset_factors(services, who.sub, sub)
