"""The resource owner password credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

from authserver.accounts.users import User
from authserver.actions.grants import (
    GrantRequest,
    TokenResponse,
    required_field,
    resource_asked,
    with_refresh,
)
from authserver.actions.sign_in import Credentials, check_password
from authserver.clients import Client, authenticate_named
from authserver.errors import InvalidGrant, InvalidScope, UnauthorizedClient
from authserver.services import Services
from authserver.tokens.refresh import start_family
from authserver.tokens.resources import Resource
from authserver.tokens.scopes import grant, parse_scope

# The client, the scope it asked for, and the resource (RFC 8707) it asked a token for.
Checked = tuple[Client, tuple[str, ...] | None, Resource | None]


async def password_grant(
    services: Services, request: GrantRequest, named: Client | None
) -> TokenResponse:
    """The sign-in page's password check (actions/sign_in.check_password): throttled per
    username and address, a blocked login refused with slow_down before anything is checked
    (the client included), and every wrong password counted and audited. Users with a second
    factor sign in through the sign-in page only."""
    credentials, fields = request.credentials, request.fields

    async def prepare() -> Credentials[Checked]:
        client = await authenticate_named(services.clients, credentials, named)
        # RFC 9700 §2.4: the password grant MUST NOT be used; we allow it only for
        # first-party clients registered with it explicitly.
        if "password" not in client.grant_types:
            raise UnauthorizedClient()
        username, password = required_field(fields, "username"), required_field(fields, "password")
        requested = parse_scope(fields.get("scope"))
        if requested is not None and not set(requested) <= set(client.scopes):
            raise InvalidScope()
        # Before the password is checked: a bad resource is no failed login.
        resource = await resource_asked(services, client, fields)
        audit: dict[str, str | None] = {"client_id": client.client_id}
        return Credentials(username, password, audit, (client, requested, resource))

    async def then(checked: Checked, user: User) -> TokenResponse:
        client, requested, resource = checked
        # The grant has no step for a second factor: a password alone must not sign in a
        # user who enrolled one. Refused as a wrong password is (and counted as one), so the
        # answer does not tell a guesser the password was right. Under AUTHSERVER_MFA=required
        # every user has one, or must enrol one on the sign-in page first: none signs in here.
        if services.settings.mfa == "required" or await services.second_factors.kinds(user.id):
            raise InvalidGrant(detail="a second factor is due; the password grant has none")
        settings = services.settings
        rotation = await start_family(
            services.families,
            user_id=user.id,
            client_id=client.client_id,
            scope=grant(requested, client.scopes, user.scopes),
            now=services.clock(),
            refresh_ttl=settings.refresh_token_ttl,
            session_ttl=settings.session_ttl,
            user_agent=request.user_agent,
            # A password change committed after the check starts no session.
            password_hash=user.password_hash,
            roles=user.profile.roles,  # read with the password it checked
            # The session is for that resource alone: its refreshes may name no other.
            resources=() if resource is None else (resource.resource,),
            dpop_jkt=request.refresh_jkt(client),
        )
        return await with_refresh(services, client, rotation, resource, request.dpop_jkt)

    return await check_password(
        services,
        username=fields.get("username"),
        address=request.address,
        prepare=prepare,
        then=then,
    )
