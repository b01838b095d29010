"""The console's clients page and its forms: the admin API's use cases, the operator as actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.actions.admin import clients as admin_clients
from authserver.actions.admin.clients import DEFAULT_OLD_SECRET_TTL, CreatedClient, RotatedSecret
from authserver.actions.console.operator import Operator, operator, recent_operator
from authserver.services import Services

PAGE = 50


@dataclass(frozen=True)
class ClientsPage:
    operator: Operator
    clients: list[dict[str, Any]]
    next_after: str | None
    search: str


async def clients_page(
    services: Services, cookie: str | None, search: str, after: str | None
) -> ClientsPage:
    """Keyset paging by client_id (the primary key's index), `search` a client_id prefix."""
    who = await operator(services, cookie)
    page = await admin_clients.list_clients(services, PAGE, after, search)
    return ClientsPage(who, page.items, page.next_after, search)


async def whoami(services: Services, cookie: str | None) -> Operator:
    """For a form page that shows nothing else (the new client's, a confirmation)."""
    return await operator(services, cookie)


@dataclass(frozen=True)
class Created:
    operator: Operator
    created: CreatedClient


async def create_client(services: Services, cookie: str | None, form: dict[str, str]) -> Created:
    who = await operator(services, cookie)
    public = form.get("public") == "on"
    body: dict[str, Any] = {
        "client_id": form.get("client_id", "").strip(),
        "public": public,
        "grant_types": form.get("grant_types", "").split(),
        "scopes": form.get("scopes", "").split(),
        "redirect_uris": form.get("redirect_uris", "").split(),
    }
    if form.get("client_name", "").strip():
        body["client_name"] = form["client_name"].strip()
    return Created(who, await admin_clients.create_client(services, who.sub, body))


@dataclass(frozen=True)
class ClientPage:
    operator: Operator
    client: dict[str, Any]
    old_secret_ttl: int = DEFAULT_OLD_SECRET_TTL


async def client_page(services: Services, cookie: str | None, client_id: str) -> ClientPage:
    """The edit form's: GET /admin/clients/{id}'s view (404 for an unknown client)."""
    who = await operator(services, cookie)
    return ClientPage(who, await admin_clients.show_client(services, client_id))


async def edit_client(services: Services, cookie: str | None, form: dict[str, str]) -> str:
    """PATCH /admin/clients/{id}'s use case with the form's name, redirect URIs and origins
    (whitespace-separated; an empty name removes it). The client_id edited."""
    who = await operator(services, cookie)
    client_id = form.get("client_id", "")
    body: dict[str, Any] = {
        "client_name": form.get("client_name", "").strip(),
        "redirect_uris": form.get("redirect_uris", "").split(),
        "allowed_origins": form.get("allowed_origins", "").split(),
    }
    await admin_clients.update_client(services, who.sub, client_id, body)
    return client_id


@dataclass(frozen=True)
class Rotated:
    operator: Operator
    rotated: RotatedSecret


async def rotate_secret(services: Services, cookie: str | None, form: dict[str, str]) -> Rotated:
    """POST /admin/clients/{id}/rotate-secret's use case; the old secret keeps working for
    `old_secret_ttl` seconds (validated there), so the client's deployments can follow."""
    who = await operator(services, cookie)
    raw = form.get("old_secret_ttl", "").strip()
    body = {
        "old_secret_ttl": int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else raw
    }
    rotated = await admin_clients.rotate_client_secret(
        services, who.sub, form.get("client_id", ""), body if raw else {}
    )
    return Rotated(who, rotated)


async def set_client_disabled(
    services: Services, cookie: str | None, client_id: str, disabled: bool
) -> None:
    who = await operator(services, cookie)
    await admin_clients.update_client(services, who.sub, client_id, {"disabled": disabled})


async def confirm_delete(services: Services, cookie: str | None) -> Operator:
    """The confirmation page's operator, signed in recently (StaleSignIn)."""
    return await recent_operator(services, cookie)


async def delete_client(services: Services, cookie: str | None, client_id: str) -> None:
    """Only after a recent sign-in (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    await admin_clients.delete_client(services, who.sub, client_id)
