"""The console's page of one user and its forms: create (POST /admin/users's use case), edit
the fields and roles (PATCH /admin/users/{sub}'s), set a password (PUT .../password's), mail a
password-reset link (the sign-in page's own use case), delete (DELETE /admin/users/{sub}'s).
The operator as actor. Granting the admin role, setting a password and deleting need a recent
sign-in (StaleSignIn): each hands the account over, or cannot be undone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.accounts.profiles import PERSONAL, Profile
from authserver.actions.admin import users as admin_users
from authserver.actions.console.operator import Operator, operator, recent_operator
from authserver.services import Services

# The form's fields that are lists of words (separated by spaces), and its checkboxes.
_WORDS = ("scopes", "roles")
_CHECKS = ("admin", "email_verified")


# The create form's fields, as a user with nothing set would fill them.
BLANK: dict[str, Any] = {"scopes": [], "admin": False, **admin_users.profile_view(Profile())}


@dataclass(frozen=True)
class UserPage:
    operator: Operator
    user: dict[str, Any]  # GET /admin/users/{sub}'s view
    mail: bool  # AUTHSERVER_SMTP_URL set: a reset link can be sent


async def user_page(services: Services, cookie: str | None, sub: str) -> UserPage:
    """The edit page's: 404 for an unknown sub."""
    who = await operator(services, cookie)
    user = await admin_users.show_user(services, sub)
    return UserPage(who, user, services.settings.mail_enabled)


async def create_user(services: Services, cookie: str | None, form: dict[str, str]) -> str:
    """The new user's sub. With the admin role, only after a recent sign-in."""
    fields = _fields(form)
    who = await (recent_operator if fields["admin"] else operator)(services, cookie)
    body: dict[str, Any] = {
        "username": form.get("username", "").strip(),
        "password": form.get("password", ""),
        # An empty profile field is no field: POST /admin/users refuses an empty string.
        **{name: value for name, value in fields.items() if value is not None},
    }
    created = await admin_users.create_user(services, who.sub, body)
    return created.sub


async def edit_user(services: Services, cookie: str | None, form: dict[str, str]) -> str:
    """PATCH with the fields the form changed, so the audit trail names only those and an
    address changed without its box touched is unverified again (API.md's rule). An empty
    text field removes it. Granting the admin role only after a recent sign-in. The sub."""
    who = await operator(services, cookie)
    sub = form.get("sub", "")
    current = await admin_users.show_user(services, sub)
    fields = _fields(form)
    if fields["admin"] and not current["admin"]:
        who = await recent_operator(services, cookie)
    body = {name: value for name, value in fields.items() if value != current[name]}
    await admin_users.update_user(services, who.sub, sub, body)
    return sub


async def set_password(services: Services, cookie: str | None, form: dict[str, str]) -> str:
    """PUT /admin/users/{sub}/password's use case and policy; the box ends their sessions.
    Only after a recent sign-in. The sub."""
    who = await recent_operator(services, cookie)
    sub = form.get("sub", "")
    body = {"password": form.get("password", ""), "revoke_sessions": "revoke_sessions" in form}
    await admin_users.set_password(services, who.sub, sub, body)
    return sub


async def send_reset_link(
    services: Services, cookie: str | None, sub: str, address: str | None
) -> None:
    who = await operator(services, cookie)
    await admin_users.send_password_reset(services, who.sub, sub, address)


async def user_to_delete(services: Services, cookie: str | None, sub: str) -> UserPage:
    """The confirmation page's: the operator signed in recently, the user (404 if unknown)."""
    await recent_operator(services, cookie)
    return await user_page(services, cookie, sub)


async def delete_user(services: Services, cookie: str | None, sub: str) -> None:
    """Only after a recent sign-in (StaleSignIn)."""
    who = await recent_operator(services, cookie)
    await admin_users.delete_user(services, who.sub, sub)


def _fields(form: dict[str, str]) -> dict[str, Any]:
    """The create and edit forms' shared fields as the admin API's body takes them: words
    split, boxes as booleans (an unticked box is not sent: False), an empty text as None; a
    text field not sent at all is left out (unchanged)."""
    fields: dict[str, Any] = {name: form.get(name) == "on" for name in _CHECKS}
    fields.update({name: form[name].split() for name in _WORDS if name in form})
    fields.update({name: form[name].strip() or None for name in PERSONAL if name in form})
    return fields
