"""The token endpoint's grants (RFC 6749 §4.3, §4.4, §6), found by their wire name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from authserver import throttle
from authserver.audit import ANONYMOUS, AuditEvent, username_digest
from authserver.authorization_codes import redeem_code
from authserver.clients import Client, ClientCredentials, authenticate_client
from authserver.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from authserver.id_tokens import mint_id_token
from authserver.refresh import Rotation, rotate, start_family
from authserver.scopes import OPENID, grant, parse_scope
from authserver.services import Services
from authserver.users import authenticate


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    refresh_expires_at: int | None = None
    refresh_delivery: str = "body"
    session_expires_at: int | None = None  # the family's absolute end
    id_token: str | None = None  # OpenID Connect: a code exchange with scope openid


Fields = Mapping[str, str]


@dataclass(frozen=True)
class GrantRequest:
    """What a token request said: the client's credentials and the body's fields, and where
    it came from (the address login throttling counts; None when unknown)."""

    credentials: ClientCredentials
    fields: Fields
    address: str | None = None
    user_agent: str | None = None  # recorded on the session a login starts


Grant = Callable[[Services, GrantRequest], Awaitable[TokenResponse]]


async def issue(services: Services, request: GrantRequest) -> TokenResponse:
    grant_type = request.fields.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required.")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise UnsupportedGrantType()
    return await handler(services, request)


async def password_grant(services: Services, request: GrantRequest) -> TokenResponse:
    """Throttled per username and address (throttle.py): a blocked login is refused with
    slow_down before anything is checked, and every wrong password counts."""
    return await throttle.guard(
        services.throttle,
        username=request.fields.get("username"),
        address=request.address,
        clock=services.clock,
        turns=services.login_turns,
        attempt=lambda: _password_login(services, request),
    )


async def _password_login(services: Services, request: GrantRequest) -> TokenResponse:
    credentials, fields = request.credentials, request.fields
    client = await authenticate_client(services.clients, credentials)
    # RFC 9700 §2.4: the password grant MUST NOT be used; we allow it only for first-party
    # clients registered with it explicitly.
    if "password" not in client.grant_types:
        raise UnauthorizedClient()
    username, password = _required(fields, "username"), _required(fields, "password")
    requested = parse_scope(fields.get("scope"))
    if requested is not None and not set(requested) <= set(client.scopes):
        raise InvalidScope()
    try:
        user = await authenticate(services.users, services.passwords, username, password)
    except InvalidGrant:
        # The username is hashed (it may be a password typed in the wrong field); the
        # password never leaves `authenticate`. Success is audited with the new family.
        detail = {"client_id": client.client_id}
        event = AuditEvent(
            services.clock(), ANONYMOUS, "login.failed", username_digest(username), detail
        )
        await services.audit.record([event])
        raise
    scope = grant(requested, client.scopes, user.scopes)
    settings = services.settings
    rotation = await start_family(
        services.families,
        user_id=user.id,
        client_id=client.client_id,
        scope=scope,
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        session_ttl=settings.session_ttl,
        user_agent=request.user_agent,
        # A password change committed after the check above starts no session.
        password_hash=user.password_hash,
    )
    return await _with_refresh(services, client, rotation)


async def authorization_code_grant(services: Services, request: GrantRequest) -> TokenResponse:
    """RFC 6749 §4.1.3 with RFC 7636 §4.5: the code, its verifier, and the redirect URI when
    the authorization request named one. Every failure is the one invalid_grant."""
    fields = request.fields
    client = await authenticate_client(services.clients, request.credentials)
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient()
    code = _required(fields, "code")
    settings = services.settings
    exchange = await redeem_code(
        services.codes,
        services.families,
        code,
        client_id=client.client_id,
        redirect_uri=fields.get("redirect_uri"),
        verifier=fields.get("code_verifier"),
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        session_ttl=settings.session_ttl,
    )
    rotation = Rotation(
        exchange.family, exchange.refresh_token, exchange.refresh_expires_at, exchange.code.scope
    )
    issued = await _with_refresh(services, client, rotation)
    if OPENID not in exchange.code.scope.split():
        return issued
    # OpenID Connect Core §3.1.3.3: the token response carries an ID token.
    redeemed = exchange.code
    id_token = mint_id_token(
        await services.keys.current(),
        issuer=settings.issuer,
        client_id=client.client_id,
        sub=redeemed.user_id,
        now=services.clock(),
        auth_time=redeemed.auth_time,
        nonce=redeemed.nonce,
        access_token=issued.access_token,
    )
    return replace(issued, id_token=id_token)


async def refresh_token_grant(services: Services, request: GrantRequest) -> TokenResponse:
    credentials, fields = request.credentials, request.fields
    client = await authenticate_client(services.clients, credentials)
    # RFC 6749 §5.2, unauthorized_client: "The authenticated client is not authorized to use
    # this authorization grant type." This is this instance's memory of the client; the
    # rotating statement checks the grant again as it stands in the database.
    if "refresh_token" not in client.grant_types:
        raise UnauthorizedClient()
    presented = _required(fields, "refresh_token")
    settings = services.settings
    rotation = await rotate(
        services.families,
        presented,
        client_id=client.client_id,
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        grace=settings.refresh_reuse_grace,
        requested=parse_scope(fields.get("scope")),
        audit=services.audit,
    )
    return await _with_refresh(services, client, rotation)


async def client_credentials_grant(services: Services, request: GrantRequest) -> TokenResponse:
    credentials, fields = request.credentials, request.fields
    client = await authenticate_client(services.clients, credentials)
    # RFC 6749 §4.4: the client credentials grant MUST only be used by confidential clients.
    if client.is_public or "client_credentials" not in client.grant_types:
        raise UnauthorizedClient()
    scope = grant(parse_scope(fields.get("scope")), client.scopes, None)
    # RFC 9068 §2.2: with no resource owner, sub is the client's own identifier.
    access = await services.mint(
        sub=client.client_id, client_id=client.client_id, scope=scope, sid=None
    )
    return TokenResponse(access.token, services.settings.access_token_ttl, scope)


async def _with_refresh(services: Services, client: Client, rotation: Rotation) -> TokenResponse:
    family = rotation.family
    # An access token never outlives its session, so verifiers that only read the JWT stop
    # accepting it when the family's absolute lifetime ends.
    ttl = min(services.settings.access_token_ttl, family.expires_at - services.clock())
    access = await services.mint(
        sub=family.user_id, client_id=client.client_id, scope=rotation.scope, sid=family.id, ttl=ttl
    )
    return TokenResponse(
        access.token,
        ttl,
        rotation.scope,
        refresh_token=rotation.refresh_token,
        refresh_expires_at=rotation.expires_at,
        refresh_delivery=client.refresh_delivery,
        session_expires_at=family.expires_at,
    )


def _required(fields: Fields, name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidRequest(f"{name} is required.")
    return value


GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code_grant,
    "password": password_grant,
    "refresh_token": refresh_token_grant,
    "client_credentials": client_credentials_grant,
}
