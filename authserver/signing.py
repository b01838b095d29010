"""The process's view of the signing keys: made at first start, reloaded from the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import anyio.to_thread

from authserver.config import Settings
from authserver.keys import KeyRecord, KeyRing, KeySealer, make_key


class KeyStore(Protocol):
    async def all(self) -> list[KeyRecord]: ...

    async def initialize(self, records: list[KeyRecord]) -> bool:
        """Stores `records` only if no active key exists yet, atomically across instances.
        False when another process got there first."""
        ...


class SigningKeys:
    def __init__(
        self, store: KeyStore, sealer: KeySealer, settings: Settings, clock: Callable[[], int]
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._settings = settings
        self._clock = clock
        self._ring: KeyRing | None = None

    @property
    def ring(self) -> KeyRing:
        if self._ring is None:
            raise LookupError("signing keys are not loaded")
        return self._ring

    @property
    def loaded(self) -> bool:
        return self._ring is not None

    async def start(self) -> None:
        """Loads the keys, first making an active and a next key if the store has none."""
        records = await self._store.all()
        if not any(r.state == "active" for r in records):
            now = self._clock()
            alg = self._settings.signing_alg
            # Key generation is CPU work (RSA: ~0.1 s); keep it off the event loop.
            new = [
                await anyio.to_thread.run_sync(make_key, alg, state, self._sealer, now)
                for state in ("active", "next")
            ]
            await self._store.initialize([key.record for key in new])
        await self.reload()

    async def reload(self) -> None:
        records = await self._store.all()
        self._ring = KeyRing(
            records,
            self._sealer,
            now=self._clock(),
            retired_ttl=self._settings.access_token_ttl + self._settings.clock_leeway,
        )
