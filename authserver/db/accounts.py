"""SQL behind the user and client stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.clients import Client
from authserver.db.engine import single_statements
from authserver.db.models import ClientRow, UserRow
from authserver.users import User


class SqlUserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def by_username(self, username: str) -> User | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(select(UserRow.__table__).where(UserRow.username == username))
            ).first()
        return _user(row) if row else None

    async def by_id(self, user_id: str) -> User | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(select(UserRow.__table__).where(UserRow.id == user_id))
            ).first()
        return _user(row) if row else None

    async def create(self, user: User, now: int) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(UserRow).values(
                        id=user.id,
                        username=user.username,
                        password_hash=user.password_hash,
                        scopes=" ".join(user.scopes),
                        disabled=user.disabled,
                        created_at=now,
                    )
                )
        except IntegrityError:
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
                update(UserRow).where(UserRow.id == user_id).values(disabled=True)
            )
        return bool(result.rowcount)


def _user(row: Any) -> User:
    return User(row.id, row.username, row.password_hash, tuple(row.scopes.split()), row.disabled)


class SqlClientStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def get(self, client_id: str) -> Client | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    select(ClientRow.__table__).where(ClientRow.client_id == client_id)
                )
            ).first()
        if row is None:
            return None
        return Client(
            client_id=row.client_id,
            secret_hash=row.secret_hash,
            grant_types=tuple(row.grant_types.split()),
            scopes=tuple(row.scopes.split()),
            refresh_delivery=row.refresh_delivery,
            redirect_uris=tuple(row.redirect_uris.split()),
            post_logout_redirect_uris=tuple(row.post_logout_redirect_uris.split()),
        )

    async def create(self, client: Client, now: int) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(ClientRow).values(
                        client_id=client.client_id,
                        secret_hash=client.secret_hash,
                        grant_types=" ".join(client.grant_types),
                        scopes=" ".join(client.scopes),
                        refresh_delivery=client.refresh_delivery,
                        # Space-separated, as the scopes: a registered URI has no spaces.
                        redirect_uris=" ".join(client.redirect_uris),
                        post_logout_redirect_uris=" ".join(client.post_logout_redirect_uris),
                        created_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def scopes_in_use(self) -> list[str]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(select(ClientRow.scopes))).scalars().all()
        return sorted({scope for row in rows for scope in row.split()})
