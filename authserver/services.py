"""What the use cases work with: settings, stores, keys, the password hasher and a clock."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authserver.accounts.consents import ConsentStore
from authserver.accounts.links import LinkStore
from authserver.accounts.login_sessions import LoginSessionStore, PendingSignInStore
from authserver.accounts.passkeys import PasskeyStore
from authserver.accounts.passwords import Passwords
from authserver.accounts.second_factors import SecondFactorStore
from authserver.accounts.users import UserStore
from authserver.audit import AuditLog
from authserver.clients import ClientStore
from authserver.config import Settings
from authserver.console_sessions import ConsoleSessionStore
from authserver.keys.manager import SigningKeys
from authserver.keys.sealing import KeySealer
from authserver.mail.compose import NoOutbox, Outbox
from authserver.metadata_documents.documents import Fetch
from authserver.metadata_documents.fetch import fetch_document
from authserver.page_limits import PageLimitStore
from authserver.registration import RegistrationStore
from authserver.throttle import ThrottleStore, Turns
from authserver.tokens.access_tokens import AccessToken, mint_access_token, verify_access_token
from authserver.tokens.authorization_codes import CodeStore
from authserver.tokens.denylist import Denylist
from authserver.tokens.dpop import MemoryProofStore, Nonces, ProofStore
from authserver.tokens.refresh import FamilyStore
from authserver.tokens.resources import ResourceStore


def wall_clock() -> int:
    return int(time.time())


@dataclass
class Services:
    settings: Settings
    users: UserStore
    clients: ClientStore
    families: FamilyStore
    denylist: Denylist
    keys: SigningKeys
    passwords: Passwords
    audit: AuditLog
    throttle: ThrottleStore
    login_sessions: LoginSessionStore
    codes: CodeStore
    second_factors: SecondFactorStore
    pending_sign_ins: PendingSignInStore
    factor_sealer: KeySealer  # TOTP secrets sealed under the KEK (second_factors.py)
    links: LinkStore  # one-time links in mail, and the reset requests (links.py)
    page_limits: PageLimitStore  # request counts of the pages that send mail
    passkeys: PasskeyStore  # WebAuthn credentials and ceremonies' challenges (passkeys.py)
    resources: ResourceStore  # the RFC 8707 resource servers: audiences of access tokens
    registrations: RegistrationStore  # RFC 7591 registrations and initial access tokens
    consents: ConsentStore  # what users allowed third-party clients (accounts/consents.py)
    console_sessions: ConsoleSessionStore  # the admin console's sessions (console_sessions.py)
    clock: Callable[[], int] = field(default=wall_clock)
    # Logins of this process waiting for a busy throttle bucket (throttle.Turns).
    login_turns: Turns = field(default_factory=Turns)
    # What signs the hosted forms' CSRF tokens (http/csrf.py): the first signs, any verifies.
    # The app derives them from the KEK, which every instance shares (keys/sealing.py).
    csrf_keys: tuple[bytes, ...] = field(default_factory=lambda: (secrets.token_bytes(32),))
    # Where use cases queue mail (mail.py); with mail off (settings.mail_enabled), one that
    # refuses: pages that need mail answer 404 before they get here.
    outbox: Outbox = field(default_factory=NoOutbox)
    # Wakes the background step that turns reset requests into links and mail
    # (actions/password_reset.Resolver); nothing while mail is off.
    wake_resolver: Callable[[], None] = field(default=lambda: None)
    # DPoP proofs seen (tokens/dpop.py): the app shares them through the database.
    dpop_proofs: ProofStore = field(default_factory=MemoryProofStore)
    # With AUTHSERVER_DPOP_NONCE=on, what makes and checks DPoP nonces (RFC 9449 §8); the app
    # derives its key from the KEK, so every instance accepts every instance's nonces.
    dpop_nonces: Nonces | None = None
    # Gets a client ID metadata document (metadata_documents/fetch.py).
    fetch_document: Fetch = field(default=fetch_document)

    async def mint(
        self,
        *,
        sub: str,
        client_id: str,
        scope: str,
        sid: str | None,
        ttl: int | None = None,
        roles: tuple[str, ...] = (),
        audience: str | None = None,
        signed_in: tuple[tuple[str, ...], int] | None = None,
        jkt: str | None = None,
    ) -> AccessToken:
        """Every token is signed here, with the ring as of the latest key change (a key
        revoked in another worker of this `serve` signs nothing more: SigningKeys.current).
        `audience`: a registered resource's identifier (RFC 8707); None, the default one.
        `jkt`: the DPoP key the token is bound to (RFC 9449 §6: `cnf.jkt`)."""
        settings = self.settings
        return mint_access_token(
            await self.keys.current(),
            issuer=settings.issuer,
            audience=settings.audience if audience is None else audience,
            ttl=settings.access_token_ttl if ttl is None else ttl,
            now=self.clock(),
            sub=sub,
            client_id=client_id,
            scope=scope,
            sid=sid,
            roles=roles,
            signed_in=signed_in,
            jkt=jkt,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """Signature and claims only; raises TokenRejected. See `introspection` for revocation.
        Only tokens for the default audience: this server's own endpoints (admin, /userinfo,
        /sessions) refuse a token minted for a resource server."""
        return verify_access_token(
            token,
            self.keys.ring,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            leeway=self.settings.clock_leeway,
            now=self.clock(),
        )

    def verify_any_audience(self, token: str) -> dict[str, Any]:
        """As `verify`, for a token of any audience this server mints (the default or a
        resource's): introspection and revocation, which serve every resource server."""
        return verify_access_token(
            token,
            self.keys.ring,
            issuer=self.settings.issuer,
            audience=None,
            leeway=self.settings.clock_leeway,
            now=self.clock(),
        )
