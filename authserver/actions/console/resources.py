"""The console's resources page (RFC 8707 resource servers) and its forms: the admin API's use
cases (actions/admin/resources), the operator as actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.actions.admin import resources as admin_resources
from authserver.actions.console.operator import Operator, operator, recent_operator
from authserver.services import Services

PAGE = 50


@dataclass(frozen=True)
class ResourcesPage:
    operator: Operator
    resources: list[dict[str, Any]]
    next_after: str | None
    access_token_ttl: int  # the most a resource's tokens may live (the form's default)


async def resources_page(
    services: Services, cookie: str | None, after: str | None
) -> ResourcesPage:
    who = await operator(services, cookie)
    page = await admin_resources.list_resources(services, PAGE, after)
    ttl = services.settings.access_token_ttl
    return ResourcesPage(who, page.items, page.next_after, ttl)


async def create_resource(services: Services, cookie: str | None, form: dict[str, str]) -> None:
    """POST /admin/resources's use case and checks; the lifetime a whole number of seconds
    (anything else is passed on as typed, and refused there)."""
    who = await operator(services, cookie)
    body: dict[str, Any] = {
        "resource": form.get("resource", "").strip(),
        "scopes": form.get("scopes", "").split(),
    }
    ttl = form.get("access_token_ttl", "").strip()
    if ttl:
        body["access_token_ttl"] = int(ttl) if ttl.isascii() and ttl.isdigit() else ttl
    await admin_resources.create_resource(services, who.sub, body)


@dataclass(frozen=True)
class Asked:
    operator: Operator
    resource: dict[str, Any]


async def resource_to_delete(services: Services, cookie: str | None, identifier: str) -> Asked:
    """The confirmation page's: the operator signed in recently (StaleSignIn), the resource
    (404 if unknown)."""
    who = await recent_operator(services, cookie)
    return Asked(who, await admin_resources.show_resource(services, identifier))


async def delete_resource(services: Services, cookie: str | None, identifier: str) -> None:
    """Only after a recent sign-in: its tokens stop working at once, its clients' sign-ins
    for it fail (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    await admin_resources.delete_resource(services, who.sub, identifier)
