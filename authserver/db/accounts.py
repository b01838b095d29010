"""SQL behind the user and client stores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.accounts.links import SIGNUP
from authserver.accounts.profiles import PERSONAL, Profile, email_key
from authserver.accounts.users import EmailTaken, User, UserChanges, granted_scopes, username_key
from authserver.audit import AuditEvent
from authserver.clients import CLIENT_MEMORY_SECONDS, Client, ClientChanges, DocumentAudit
from authserver.db.audit import append_audit
from authserver.db.engine import is_postgres, single_statements
from authserver.db.models import (
    AuditEventRow,
    ClientRow,
    ConsentGrantRow,
    LinkTokenRow,
    PasskeyRow,
    RecoveryCodeRow,
    SecondFactorRow,
    UserRow,
)
from authserver.db.notify import notify_client_changed

_LIVE_USER = UserRow.deleted_at.is_(None)
_LIVE_CLIENT = ClientRow.deleted_at.is_(None)


# What a User is read from: every column but the purge's own (signup_expires_at), which no
# read needs, so a store also reads a database migrated no further than the user's profile.
_USER_COLUMNS = [c for c in UserRow.__table__.c if c.name != "signup_expires_at"]


class SqlUserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        self._postgres = is_postgres(engine)

    async def by_username(self, username: str) -> User | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    select(*_USER_COLUMNS).where(
                        UserRow.username_key == username_key(username), _LIVE_USER
                    )
                )
            ).first()
        return _user(row) if row else None

    async def by_id(self, user_id: str) -> User | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(select(*_USER_COLUMNS).where(UserRow.id == user_id, _LIVE_USER))
            ).first()
        return _user(row) if row else None

    async def page(self, limit: int, after: str | None, prefix: str | None) -> list[User]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(users_page(limit, after, prefix))).all()
        return [_user(row) for row in rows]

    async def create(self, user: User, now: int, signup_expires_at: int | None = None) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(UserRow).values(
                        id=user.id,
                        username=user.username,
                        username_key=username_key(user.username),
                        password_hash=user.password_hash,
                        scopes=" ".join(user.scopes),
                        disabled=user.disabled,
                        created_at=now,
                        signup_expires_at=signup_expires_at,
                        **_profile_values(user.profile),
                    )
                )
        except IntegrityError as exc:
            if _email_taken(exc):
                raise EmailTaken() from None
            return False
        return True

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(UserRow)
                .where(UserRow.id == user_id, UserRow.password_hash == old_hash)
                .values(password_hash=new_hash)
            )

    async def disable(self, user_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(UserRow)
                .where(UserRow.id == user_id, _LIVE_USER)
                .values(disabled=True, signup_expires_at=None)
            )
            await _end_sign_up_links(conn, user_id)
        return bool(result.rowcount)

    async def update(
        self, user_id: str, changes: UserChanges, audit: Sequence[AuditEvent]
    ) -> User | None:
        try:
            return await self._update(user_id, changes, audit)
        except IntegrityError as exc:
            # Rolled back whole: the other fields of the change did not land either.
            if _email_taken(exc):
                raise EmailTaken() from None
            raise

    async def _update(
        self, user_id: str, changes: UserChanges, audit: Sequence[AuditEvent]
    ) -> User | None:
        async with self._engine.begin() as conn:
            # The row as it is once locked: a concurrent PATCH of the scopes and one of admin
            # both land (SQLite's BEGIN IMMEDIATE already serialises).
            row = await _locked(conn, user_id, self._postgres)
            if row is None:
                return None
            user = _user(row)
            scopes = user.scopes if changes.scopes is None else changes.scopes
            admin = user.is_admin if changes.admin is None else changes.admin
            if changes.scopes is not None and changes.admin is None:
                admin = admin or "admin" in changes.scopes
            values: dict[str, Any] = {"scopes": " ".join(granted_scopes(scopes, admin))}
            if changes.disabled is not None:
                # An operator decided about the account: a waiting sign-up is no longer purged.
                values.update(disabled=changes.disabled, signup_expires_at=None)
            if changes.disabled:
                await _end_sign_up_links(conn, user_id)
            if changes.profile.given:
                # On the locked row: whether the address changed is judged against the one
                # stored now, not one read before.
                values.update(_profile_values(changes.profile.applied_to(user.profile)))
            await conn.execute(update(UserRow).where(UserRow.id == user_id).values(**values))
            await append_audit(conn, audit)
            row = await _locked(conn, user_id, False)
        return _user(row) if row else None

    async def set_password_hash(
        self,
        user_id: str,
        password_hash: str,
        audit: Sequence[AuditEvent],
        expected: str | None = None,
    ) -> bool:
        which = [UserRow.id == user_id, _LIVE_USER]
        if expected is not None:
            which.append(UserRow.password_hash == expected)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(UserRow).where(*which).values(password_hash=password_hash)
            )
            if result.rowcount:
                await append_audit(conn, audit)
        return bool(result.rowcount)

    async def delete(self, user_id: str, now: int, audit: Sequence[AuditEvent]) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(UserRow)
                .where(UserRow.id == user_id, _LIVE_USER)
                .values(
                    username=None,
                    username_key=None,
                    password_hash=None,
                    disabled=True,
                    deleted_at=now,
                    **_profile_values(Profile()),  # the address is free again
                )
            )
            if result.rowcount:
                await _forget_username(conn, user_id)
                # The row stays for its sub; the user's second factors (a sealed secret) and
                # recovery codes are nobody's any more.
                await conn.execute(
                    delete(SecondFactorRow).where(SecondFactorRow.user_id == user_id)
                )
                await conn.execute(
                    delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id)
                )
                await conn.execute(delete(PasskeyRow).where(PasskeyRow.user_id == user_id))
                # What the user allowed third-party apps, too (their families end with the user).
                await conn.execute(
                    delete(ConsentGrantRow).where(ConsentGrantRow.user_id == user_id)
                )
                await append_audit(conn, audit)
        return bool(result.rowcount)


async def _end_sign_up_links(conn: AsyncConnection, user_id: str) -> None:
    """An operator's disable of an account still waiting for its sign-up link (stored disabled,
    actions/sign_up.py) must hold: the link, which would enable it, is gone."""
    await conn.execute(
        delete(LinkTokenRow).where(
            LinkTokenRow.user_id == user_id,
            LinkTokenRow.kind == SIGNUP,
            LinkTokenRow.spent_at.is_(None),
        )
    )


async def _forget_username(conn: AsyncConnection, user_id: str) -> None:
    """The trail keeps the sub alone: `user.created` and `user.signed_up` recorded the username
    too, and `user.created` and `user.updated` the profile (profiles.PERSONAL: who the user is,
    not what they may do). Found through user_id's index (target has none since 0029)."""
    recorded = (
        await conn.execute(
            select(AuditEventRow.id, AuditEventRow.detail).where(
                AuditEventRow.user_id == user_id,
                AuditEventRow.target == user_id,
                AuditEventRow.action.in_(("user.created", "user.signed_up", "user.updated")),
            )
        )
    ).all()
    personal = {"username", *PERSONAL}
    for row in recorded:
        kept = json.loads(row.detail)
        detail = {k: v for k, v in kept.items() if k not in personal}
        if detail == kept:
            continue
        await conn.execute(
            update(AuditEventRow)
            .where(AuditEventRow.id == row.id)
            .values(detail=json.dumps(detail, sort_keys=True))
        )


async def _locked(conn: AsyncConnection, user_id: str, lock: bool) -> Any:
    statement = select(*_USER_COLUMNS).where(UserRow.id == user_id, _LIVE_USER)
    if lock:
        statement = statement.with_for_update()
    return (await conn.execute(statement)).first()


def _user(row: Any) -> User:
    return User(
        row.id,
        row.username,
        row.password_hash,
        tuple(row.scopes.split()),
        row.disabled,
        row.created_at,
        row.last_login_at,
        profile_of(row._mapping),
    )


def profile_of(row: Any) -> Profile:
    """A user's profile from a row's columns by name (a SQLAlchemy mapping or an asyncpg
    Record): also what the code exchange's statement returns of its user (db/codes.py)."""
    return Profile(
        email=row["email"],
        email_verified=bool(row["email_verified"]),
        name=row["name"],
        given_name=row["given_name"],
        family_name=row["family_name"],
        locale=row["locale"],
        roles=tuple(row["roles"].split()),
    )


def _profile_values(profile: Profile) -> dict[str, Any]:
    return {
        "email": profile.email,
        "email_key": email_key(profile.email),
        "email_verified": profile.email_verified,
        "name": profile.name,
        "given_name": profile.given_name,
        "family_name": profile.family_name,
        "locale": profile.locale,
        # Space-separated, as the scopes: a role name has no spaces (profiles.role_problem).
        "roles": " ".join(profile.roles),
    }


def _email_taken(exc: IntegrityError) -> bool:
    """Whether the unique key broken was the address's: both databases name it (SQLite
    `users.email_key`, Postgres `uq_users_email_key`)."""
    return "email_key" in str(exc.orig)


def users_page(limit: int, after: str | None, prefix: str | None) -> Select[Any]:
    """Keyset paging by username: the unique index on it serves both the order and the start,
    so a page costs the same at the 100,000th user as at the first (tests/http/test_console.py
    has Postgres EXPLAIN it)."""
    statement = select(*_USER_COLUMNS).where(_LIVE_USER).order_by(UserRow.username)
    if after is not None:
        statement = statement.where(UserRow.username > after)
    if prefix:
        statement = statement.where(*_starting_with(UserRow.username, prefix))
    return statement.limit(limit)


def _starting_with(column: Any, prefix: str) -> tuple[Any, ...]:
    """A prefix search the column's index serves: the index scan starts at `prefix` (every
    string sorts at or after its own prefix), and substr, not LIKE, keeps the match exact and
    case-sensitive on both databases, with no escaping."""
    return (column >= prefix, func.substr(column, 1, len(prefix)) == prefix)


class SqlClientStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def get(self, client_id: str) -> Client | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    select(ClientRow.__table__).where(
                        ClientRow.client_id == client_id, _LIVE_CLIENT
                    )
                )
            ).first()
        return _client(row) if row else None

    async def fresh(self, client_id: str) -> Client | None:
        return await self.get(client_id)

    async def page(self, limit: int, after: str | None, prefix: str | None = None) -> list[Client]:
        statement = select(ClientRow.__table__).where(_LIVE_CLIENT).order_by(ClientRow.client_id)
        if after is not None:
            statement = statement.where(ClientRow.client_id > after)
        if prefix:
            statement = statement.where(*_starting_with(ClientRow.client_id, prefix))
        async with self._single.connect() as conn:
            rows = (await conn.execute(statement.limit(limit))).all()
        return [_client(row) for row in rows]

    async def create(self, client: Client, now: int) -> bool:
        try:
            async with self._engine.begin() as conn:
                await insert_client(conn, client, now)
        except IntegrityError:
            return False
        return True

    async def save_document(
        self, client: Client, now: int, audit: DocumentAudit | None = None
    ) -> Client | None:
        # Two instances fetching the same document at once both land: one makes the row (the
        # INSERT settles which), the other finds it and replaces a document client's metadata
        # and freshness, the row locked meanwhile so `before` is what it replaces. What the
        # operator decided stays (disabled, deleted), and an operator's own client with this
        # id is never overwritten.
        dialect = postgresql if is_postgres(self._engine) else sqlite
        values = insert_client_values(client, now)
        statement = dialect.insert(ClientRow).values(**values).on_conflict_do_nothing()
        refreshed = (
            "grant_types", "scopes", "redirect_uris", "post_logout_redirect_uris",
            "client_name", "client_metadata", "document_expires_at",
        )  # fmt: skip
        where = (ClientRow.client_id == client.client_id, _LIVE_CLIENT)
        before: Client | None = None
        async with self._engine.begin() as conn:
            made = (await conn.execute(statement.returning(ClientRow.client_id))).first()
            if made is None:
                query = select(ClientRow.__table__).where(
                    *where, ClientRow.registration == client.registration
                )
                if is_postgres(self._engine):
                    query = query.with_for_update()
                old = (await conn.execute(query)).first()
                if old is None:  # deleted, or an operator's client
                    row = (await conn.execute(select(ClientRow.__table__).where(*where))).first()
                    return _client(row) if row else None
                before = _client(old)
                changes = {name: values[name] for name in refreshed}
                await conn.execute(update(ClientRow).where(*where).values(**changes))
            row = (await conn.execute(select(ClientRow.__table__).where(*where))).first()
            if row is None:
                return None
            saved = _client(row)
            if audit is not None:
                await append_audit(conn, audit(before, saved))
            await notify_client_changed(conn, client.client_id)
        return saved

    async def update(
        self, client_id: str, changes: ClientChanges, now: int, audit: Sequence[AuditEvent]
    ) -> Client | None:
        values: dict[str, Any] = {}
        if changes.grant_types is not None:
            values["grant_types"] = " ".join(changes.grant_types)
        if changes.scopes is not None:
            values["scopes"] = " ".join(changes.scopes)
        if changes.refresh_delivery is not None:
            values["refresh_delivery"] = changes.refresh_delivery
        if changes.redirect_uris is not None:
            values["redirect_uris"] = " ".join(changes.redirect_uris)
        if changes.post_logout_redirect_uris is not None:
            values["post_logout_redirect_uris"] = " ".join(changes.post_logout_redirect_uris)
        if changes.client_name is not None:
            values["client_name"] = changes.client_name or None
        if changes.allowed_origins is not None:
            values["allowed_origins"] = " ".join(changes.allowed_origins)
        if changes.require_mfa is not None:
            values["require_mfa"] = changes.require_mfa
        if changes.dpop_bound_access_tokens is not None:
            values["dpop_bound_access_tokens"] = changes.dpop_bound_access_tokens
        if changes.client_metadata is not None:
            values["client_metadata"] = _metadata_json(changes.client_metadata)
        if changes.resources is not None:
            values["resources"] = " ".join(changes.resources)
        if changes.disabled:
            values["disabled"] = True
            values["tokens_revoked_before"] = now  # every token issued so far dies
        elif changes.disabled is not None:
            values["disabled"] = False
            values["tokens_revoked_before"] = _after_reenabling(now)
        if changes.revoke_tokens:
            values["tokens_revoked_before"] = now
        where = (ClientRow.client_id == client_id, _LIVE_CLIENT)
        async with self._engine.begin() as conn:
            if values:
                result = await conn.execute(update(ClientRow).where(*where).values(**values))
                if not result.rowcount:
                    return None
            row = (await conn.execute(select(ClientRow.__table__).where(*where))).first()
            if row is None:
                return None
            await append_audit(conn, audit)
            # Every instance forgets its memory of the client when this commits (db/notify.py).
            await notify_client_changed(conn, client_id)
        return _client(row)

    async def rotate_secret(
        self, client_id: str, new_hash: str, old_expires_at: int, now: int, audit: AuditEvent
    ) -> bool:
        async with self._engine.begin() as conn:
            # One statement: the old hash is the one current when it runs, whatever raced.
            result = await conn.execute(
                update(ClientRow)
                .where(
                    ClientRow.client_id == client_id,
                    _LIVE_CLIENT,
                    ClientRow.secret_hash.is_not(None),
                )
                .values(
                    old_secret_hash=ClientRow.secret_hash,
                    old_secret_expires_at=old_expires_at,
                    secret_hash=new_hash,
                    secret_rotated_at=now,
                )
            )
            if result.rowcount:
                await append_audit(conn, [audit])
                await notify_client_changed(conn, client_id)
        return bool(result.rowcount)

    async def delete(self, client_id: str, now: int, audit: AuditEvent) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(ClientRow)
                .where(ClientRow.client_id == client_id, _LIVE_CLIENT)
                .values(
                    deleted_at=now,
                    disabled=True,
                    secret_hash=None,  # NULL reads as public, but a deleted row is never read
                    old_secret_hash=None,
                    old_secret_expires_at=None,
                    registration_token_hash=None,
                    tokens_revoked_before=now,
                )
            )
            if result.rowcount:
                # The row stays (its id is never reused); what users allowed it goes.
                await conn.execute(
                    delete(ConsentGrantRow).where(ConsentGrantRow.client_id == client_id)
                )
                await append_audit(conn, [audit])
                await notify_client_changed(conn, client_id)
        return bool(result.rowcount)

    async def scopes_in_use(self) -> list[str]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(select(ClientRow.scopes).where(_LIVE_CLIENT))).scalars()
            return sorted({scope for row in rows for scope in row.split()})

    async def origins_in_use(self) -> frozenset[str]:
        live = (_LIVE_CLIENT, ClientRow.disabled.is_(False), ClientRow.allowed_origins != "")
        async with self._single.connect() as conn:
            rows = (await conn.execute(select(ClientRow.allowed_origins).where(*live))).scalars()
            return frozenset(origin for row in rows for origin in row.split())


async def insert_client(conn: AsyncConnection, client: Client, now: int) -> None:
    """The new client's row (IntegrityError when its client_id is taken)."""
    await conn.execute(insert(ClientRow).values(**insert_client_values(client, now)))


def insert_client_values(client: Client, now: int) -> dict[str, Any]:
    """A new client's row, as `insert(ClientRow).values` takes it."""
    return dict(
        client_id=client.client_id,
        secret_hash=client.secret_hash,
        grant_types=" ".join(client.grant_types),
        scopes=" ".join(client.scopes),
        refresh_delivery=client.refresh_delivery,
        # Space-separated, as the scopes: a registered URI has no spaces.
        redirect_uris=" ".join(client.redirect_uris),
        post_logout_redirect_uris=" ".join(client.post_logout_redirect_uris),
        client_name=client.client_name,
        allowed_origins=" ".join(client.allowed_origins),
        require_mfa=client.require_mfa,
        dpop_bound_access_tokens=client.dpop_bound_access_tokens,
        created_at=now,
        disabled=False,
        registration=client.registration,
        consent=client.consent,
        registration_token_hash=client.registration_token_hash,
        client_metadata=_metadata_json(client.client_metadata),
        document_expires_at=client.document_expires_at,
        # Space-separated: an identifier has no spaces (tokens/resources.py).
        resources=" ".join(client.resources),
    )


def _after_reenabling(now: int) -> Any:
    """The mark once re-enabled: the disabling's mark D moved to min(now - 1, D + memory),
    never back (NULL stays NULL), and only if the client is disabled. Instances remembering
    the client as enabled may have issued tokens until D + memory: those stay dead; a token
    issued from now on lives."""
    mark = ClientRow.tokens_revoked_before
    stale_until = mark + CLIENT_MEMORY_SECONDS
    until = case((stale_until < now - 1, stale_until), else_=now - 1)
    moved = case((until < mark, mark), else_=until)
    # SET reads the row as it was: an enabled client's mark stays where it is.
    return case((ClientRow.disabled, moved), else_=mark)


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        secret_hash=row.secret_hash,
        grant_types=tuple(row.grant_types.split()),
        scopes=tuple(row.scopes.split()),
        refresh_delivery=row.refresh_delivery,
        redirect_uris=tuple(row.redirect_uris.split()),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris.split()),
        client_name=row.client_name,
        allowed_origins=tuple(row.allowed_origins.split()),
        disabled=row.disabled,
        old_secret_hash=row.old_secret_hash,
        old_secret_expires_at=row.old_secret_expires_at,
        created_at=row.created_at,
        secret_rotated_at=row.secret_rotated_at,
        require_mfa=row.require_mfa,
        dpop_bound_access_tokens=row.dpop_bound_access_tokens,
        registration=row.registration,
        registration_token_hash=row.registration_token_hash,
        client_metadata=tuple(json.loads(row.client_metadata or "{}").items()),
        consent=row.consent,
        resources=tuple(row.resources.split()),
        document_expires_at=row.document_expires_at,
    )


def _metadata_json(pairs: tuple[tuple[str, str], ...]) -> str | None:
    return json.dumps(dict(pairs), separators=(",", ":")) if pairs else None
