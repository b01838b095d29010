"""Tables. Behaviour lives in the domain modules; the schema is made by the migrations only.

Times are whole seconds since the epoch in BIGINT columns: one representation that SQLite
and Postgres compare identically, with no time-zone handling in either driver.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A family id (a UUID, the access tokens' `sid`): native `uuid` on Postgres, 16 bytes (0008);
# still the 36-character string on SQLite. Read and written as that string either way.
FAMILY_ID = Uuid(as_uuid=False).with_variant(String(36), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Both NULL once the user is deleted (0007): the row stays for its sub, the name is free.
    username: Mapped[str | None] = mapped_column(String(256), unique=True)
    # users.username_key of the name (0009): unique, so `Alice` and `alice` are one account.
    # Text: NFKC may lengthen a name; NULL once deleted, as the name.
    username_key: Mapped[str | None] = mapped_column(Text, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(512))
    scopes: Mapped[str] = mapped_column(Text, default="")  # space-separated
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
    last_login_at: Mapped[int | None] = mapped_column(BigInteger)
    # The profile (0010, profiles.py); all NULL (roles empty) once the user is deleted.
    email: Mapped[str | None] = mapped_column(String(254))
    # profiles.email_key of the address: unique, so two instances racing cannot both give one
    # address (in any case) to two live users. NULL without an address, and once deleted.
    email_key: Mapped[str | None] = mapped_column(Text, unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    name: Mapped[str | None] = mapped_column(String(256))
    given_name: Mapped[str | None] = mapped_column(String(256))
    family_name: Mapped[str | None] = mapped_column(String(256))
    locale: Mapped[str | None] = mapped_column(String(35))
    roles: Mapped[str] = mapped_column(Text, default="", server_default="")  # space-separated
    # A `verified` sign-up waiting for its link (0028): when it is abandoned, so that the purge
    # frees its username (db/purge.py). NULL once verified, or once an operator enables or
    # disables the account (their decision then holds).
    signup_expires_at: Mapped[int | None] = mapped_column(BigInteger, index=True)


class ClientRow(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64))  # SHA-256 hex; NULL = public
    grant_types: Mapped[str] = mapped_column(Text)  # space-separated
    scopes: Mapped[str] = mapped_column(Text)  # space-separated
    refresh_delivery: Mapped[str] = mapped_column(String(8), default="body")
    created_at: Mapped[int] = mapped_column(BigInteger)
    # 0006: space-separated absolute URIs, compared as exact strings (clients.py).
    redirect_uris: Mapped[str] = mapped_column(Text, default="", server_default="")
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text, default="", server_default="")
    # 0012: the name the hosted pages show (NULL: the client_id), and the browser origins of
    # the client's pages, space-separated as the URIs.
    client_name: Mapped[str | None] = mapped_column(Text)
    allowed_origins: Mapped[str] = mapped_column(Text, default="", server_default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A deleted client's row stays (0007), so its client_id can never be registered again.
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
    secret_rotated_at: Mapped[int | None] = mapped_column(BigInteger)
    # The secret before the last rotation, accepted until old_secret_expires_at.
    old_secret_hash: Mapped[str | None] = mapped_column(String(64))
    old_secret_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    # Access tokens of this client with iat at or before it are revoked (disable, delete).
    tokens_revoked_before: Mapped[int | None] = mapped_column(BigInteger)
    # 0017: the client gets only sessions with a second factor (acr mfa).
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # 0022: /token refuses this client's requests without a DPoP proof (RFC 9449 §5).
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # 0021: RFC 7591 registration ("open" | "token"; NULL: an operator's client), third-party
    # consent, the RFC 7592 registration access token's SHA-256, and the kept metadata (JSON).
    registration: Mapped[str | None] = mapped_column(String(8))
    consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    registration_token_hash: Mapped[str | None] = mapped_column(String(64))
    client_metadata: Mapped[str | None] = mapped_column(Text)
    # 0024: the RFC 8707 resources the client may name, space-separated ("": any registered).
    resources: Mapped[str] = mapped_column(Text, default="", server_default="")
    # 0027: a client ID metadata document's client (registration "document"): its document
    # is fresh until then (metadata_documents/); NULL for every other client.
    document_expires_at: Mapped[int | None] = mapped_column(BigInteger)


class InitialAccessTokenRow(Base):
    """0021: an operator's token for `token`-mode registration (SHA-256 only)."""

    __tablename__ = "initial_access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    max_uses: Mapped[int | None] = mapped_column(Integer)  # NULL: any number
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)  # AES-GCM under the KEK
    created_at: Mapped[int] = mapped_column(BigInteger)
    activated_at: Mapped[int | None] = mapped_column(BigInteger)
    retired_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # At most one active key, whatever instances race to make or rotate them.
        Index(
            "uq_signing_keys_one_active",
            "state",
            unique=True,
            sqlite_where=state == "active",
            postgresql_where=state == "active",
        ),
    )


class FamilyRow(Base):
    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(FAMILY_ID, primary_key=True)
    # No foreign keys (0029): checking them locked the user's and the client's row for every
    # exchange and login (the client's one row shared by all of them). The statements that start
    # a family hold both rows themselves, and the purge, which alone deletes users and clients,
    # ends their families in the same transaction (db/purge.py).
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Indexed (0004) for the purge and the revocation feed's range scans.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # 0006: the login session whose authorization code started the family, so /end-session
    # revokes what it started; NULL for password logins.
    login_session_id: Mapped[str | None] = mapped_column(String(36), index=True)
    user_agent: Mapped[str | None] = mapped_column(String(200))  # of the login that started it
    # 0019: the RFC 8707 resources its authorization named, space-separated; NULL: none.
    resources: Mapped[str | None] = mapped_column(Text)
    # 0017: the browser sign-in's RFC 8176 methods and auth_time, carried into every access
    # token of the family; NULL: a password-grant family, or one from before 0017 (no claims).
    amr: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[int | None] = mapped_column(BigInteger)
    # 0022: the DPoP key (RFC 7638 thumbprint) a public client's refresh tokens are bound to.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    # 0030: the live refresh token (`<family id>.<secret>`: found through the primary key):
    # its SHA-256, its parent's (the token spent last, for the grace retry and a replay) and
    # when that was spent, the live one's issue time and idle end. None of them indexed, so a
    # rotation is a HOT update on Postgres. NULL: a family started before 0030, whose tokens
    # are still in refresh_tokens until one rotates here.
    token_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    parent_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    parent_spent_at: Mapped[int | None] = mapped_column(BigInteger)
    token_issued_at: Mapped[int | None] = mapped_column(BigInteger)
    token_expires_at: Mapped[int | None] = mapped_column(BigInteger)


class RefreshTokenRow(Base):
    """Tokens issued before 0030 (no family in them), until a later migration drops the table
    one idle lifetime after 0030: newer tokens live in their family's row."""

    __tablename__ = "refresh_tokens"

    # Spent rows are kept until their family is purged, so a replay is recognised as reuse.
    # The hashes are the 32 bytes of the SHA-256 (0008), not its 64 hex characters: the db
    # adapter converts (db/columns.py). parent_hash has no index: the grace path reaches the
    # child through its family (db/families.py).
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    family_id: Mapped[str] = mapped_column(
        FAMILY_ID, ForeignKey("refresh_families.id", ondelete="CASCADE"), index=True
    )
    parent_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    spent_at: Mapped[int | None] = mapped_column(BigInteger)


class SpentRefreshTokenRow(Base):
    """0030: a family's spent tokens but the last (its row keeps that one as the live one's
    parent), kept until the family is purged, so a replay is recognised as reuse. Only the
    key a replay is looked up by: family, then hash."""

    __tablename__ = "spent_refresh_tokens"

    family_id: Mapped[str] = mapped_column(
        FAMILY_ID, ForeignKey("refresh_families.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    spent_at: Mapped[int] = mapped_column(BigInteger)


class DeniedAccessTokenRow(Base):
    __tablename__ = "denied_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    # Integer, not BigInteger: only SQLite's INTEGER PRIMARY KEY numbers rows by itself.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64), index=True)
    # No index (0029): no read looks events up by target alone.
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object, never secrets
    # Whom and which session the event concerns (0004), for GET /admin/audit's filters.
    user_id: Mapped[str | None] = mapped_column(String(256), index=True)
    family_id: Mapped[str | None] = mapped_column(String(36), index=True)


class LoginThrottleRow(Base):
    __tablename__ = "login_throttle"

    # "user:" or "addr:" + SHA-256 hex of the username or client address.
    bucket: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[int] = mapped_column(BigInteger, index=True)
    blocked_until: Mapped[int] = mapped_column(BigInteger)
    # Attempts in flight (0005): their count, and since when it has been above zero.
    pending: Mapped[int] = mapped_column(Integer, server_default="0")
    pending_since: Mapped[int] = mapped_column(BigInteger, server_default="0")


class LoginSessionRow(Base):
    """0006: the single sign-on session behind the login-session cookie."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the cookie
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)  # when the password was typed: auth_time
    last_used_at: Mapped[int] = mapped_column(BigInteger)  # the idle lifetime counts from here
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)  # absolute end
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    # 0013: of the browser that signed in, for the account page (cut as refresh_families').
    user_agent: Mapped[str | None] = mapped_column(String(200))
    # 0015: the RFC 8176 methods the sign-in used, space-separated; NULL: the password alone.
    amr: Mapped[str | None] = mapped_column(String(64))
    # 0017: the last time the user proved a factor (a step-up moves it); NULL: created_at.
    auth_time: Mapped[int | None] = mapped_column(BigInteger)


class AuthorizationCodeRow(Base):
    """0006: authorization codes, kept after use (until purged) so a replay is recognised."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Its ON DELETE CASCADE is what makes a client's delete wait for an exchange spending one
    # of its codes, whose family the purge then finds (refresh_families has no key, 0029).
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    login_session_id: Mapped[str] = mapped_column(String(36))
    redirect_uri: Mapped[str] = mapped_column(Text)
    redirect_uri_given: Mapped[bool] = mapped_column(Boolean)  # named in the /authorize request
    code_challenge: Mapped[str] = mapped_column(String(128))  # S256
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    auth_time: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    family_id: Mapped[str | None] = mapped_column(FAMILY_ID)  # the family its first use started
    amr: Mapped[str | None] = mapped_column(String(64))  # 0015: its login session's
    resources: Mapped[str | None] = mapped_column(Text)  # 0019: as refresh_families'
    # 0025: the DPoP key the authorization request named (RFC 9449 §10 `dpop_jkt`); the
    # exchange needs a proof of it.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))


class MailRow(Base):
    """0011: mail waiting to be sent (authserver/mail/sender.py), deleted once sent."""

    __tablename__ = "mail_outbox"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recipient: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(64))  # its name, for the logs
    attempts: Mapped[int] = mapped_column(Integer)  # claims so far, counted as they are made
    # When it is due. While a sender holds it, the end of that sender's lease: a sender that
    # dies mid-send leaves the row due again then, and another sends it.
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, index=True)
    claim: Mapped[str | None] = mapped_column(String(32))  # the holder's random token
    created_at: Mapped[int] = mapped_column(BigInteger)


class SecondFactorRow(Base):
    """0015: a second factor a user enrolled (authserver/accounts/second_factors.py)."""

    __tablename__ = "second_factors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "totp"
    # AES-256-GCM under the KEK, the factor's id in the associated data (keys/sealing.py).
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    # The last RFC 6238 time step accepted: only a later one is accepted again.
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        # One authenticator app a user, whatever instances race to enrol one; passkeys (later)
        # are several a user, so the rule names the kind.
        Index(
            "uq_second_factors_one_totp",
            "user_id",
            unique=True,
            sqlite_where=kind == "totp",
            postgresql_where=kind == "totp",
        ),
    )


class RecoveryCodeRow(Base):
    """0015: single-use recovery codes, only their SHA-256 stored; a new set replaces the old."""

    __tablename__ = "recovery_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class PendingSignInRow(Base):
    """0015: a password checked for a user with a second factor, awaiting it
    (actions/sign_in_steps.py). Not a login session: nothing that looks for one finds it."""

    __tablename__ = "pending_sign_ins"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of its cookie
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str | None] = mapped_column(String(128))  # for the audit events
    password_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class PasskeyRow(Base):
    """0018: a WebAuthn credential a user registered (authserver/accounts/passkeys.py)."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # base64url; unique: one authenticator credential, one account.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key, no secret
    # The authenticator's signature counter last accepted: only a higher one is accepted again.
    sign_count: Mapped[int] = mapped_column(BigInteger)
    transports: Mapped[str | None] = mapped_column(String(200))  # space-separated
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)


class WebAuthnChallengeRow(Base):
    """0018: a WebAuthn ceremony's challenge, by its SHA-256, spent in one DELETE (5 min)."""

    __tablename__ = "webauthn_challenges"

    challenge_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # passkeys.REGISTER or passkeys.SIGN_IN
    # The user a registration or a second-factor sign-in is for; NULL for passwordless.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    browser: Mapped[str] = mapped_column(String(64))  # SHA-256 of the CSRF token it was given to
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class LinkTokenRow(Base):
    """0014: one-time links in mail (authserver/accounts/links.py), kept spent until purged."""

    __tablename__ = "link_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex
    kind: Mapped[str] = mapped_column(String(16))  # links.RESET or links.VERIFY
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # A reset link's: SHA-256 of the password hash it was mailed under; another hash, it is dead.
    password_fingerprint: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))  # a verification link's address
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    spent_at: Mapped[int | None] = mapped_column(BigInteger)


class ResetRequestRow(Base):
    """0014: an address asked for a password reset, resolved off the request path."""

    __tablename__ = "reset_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    locale: Mapped[str | None] = mapped_column(String(35))  # the page's language
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)


class PageRequestRow(Base):
    """0014: requests to the mail-sending pages per bucket and fixed window (page_limits.py)."""

    __tablename__ = "page_requests"

    bucket: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)


class ResourceRow(Base):
    """0019: resource servers (RFC 8707), the audiences of access tokens (tokens/resources.py)."""

    __tablename__ = "resources"

    resource: Mapped[str] = mapped_column(String(256), primary_key=True)  # an absolute URI
    scopes: Mapped[str] = mapped_column(Text)  # space-separated
    access_token_ttl: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)


class DPoPProofRow(Base):
    """0022: a DPoP proof accepted, by `Proof.replay_key`, until its iat leaves the window."""

    __tablename__ = "dpop_proofs"

    proof_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class ConsentGrantRow(Base):
    """0023: one thing a user allowed a third-party client (accounts/consents.py): kind
    "client" (the grant itself, value ""), "scope" or "resource"."""

    __tablename__ = "consent_grants"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), primary_key=True)
    granted_at: Mapped[int] = mapped_column(BigInteger)


class ConsoleSessionRow(Base):
    """0026: the admin console's session (console_sessions.py): found by its cookie's SHA-256;
    no `sub` while the sign-in is under way."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    sub: Mapped[str | None] = mapped_column(String(36))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # AES-GCM under the KEK
    access_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    refreshing_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
