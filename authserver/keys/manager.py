"""The process's view of the signing keys: made at first start, reloaded from the store.

Several instances share one database; each signs with the key the database calls active, as
of its last reload. Reloads happen after every key change made here, every `reload_interval`
seconds (`keep_fresh`, run by the app's lifespan), and before the next signature once a change
made elsewhere is heard of: a change in another worker of this `serve` moves the epoch the
workers share (keys/epoch.py), so it holds there once the change has answered; another
instance's change arrives as a Postgres NOTIFY (db/notify.py), milliseconds after its commit.
Unheard (SQLite, or while the listening connection is lost) another instance's change takes
effect here within one interval. The timing rules account for
that lag (`publication_lag`): a next key is promoted only once it has been published for
`jwks_max_age` plus the lag (every instance has then served it for a full cache lifetime), and
a retired key stays published the lag longer than its last token can live.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.to_thread
from cryptography.exceptions import InvalidTag

from authserver.accounts.second_factors import reseal_totp
from authserver.config import Settings
from authserver.errors import TemporarilyUnavailable
from authserver.keys import lifecycle
from authserver.keys.epoch import KeyEpoch, LocalEpoch
from authserver.keys.records import KeyRecord
from authserver.keys.ring import KeyRing, make_key
from authserver.keys.sealing import KeySealer

logger = logging.getLogger("authserver")


class KeyStore(Protocol):
    async def all(self) -> list[KeyRecord]: ...

    async def initialize(self, records: list[KeyRecord]) -> bool:
        """Stores `records` only if no active key exists yet, atomically across instances.
        False when another process got there first."""
        ...

    async def change(
        self, decide: Callable[[list[KeyRecord]], lifecycle.Transition], actor: str, now: int
    ) -> lifecycle.Transition:
        """Applies `decide(current keys)` and audits its events, atomically and serialised
        across instances; an exception from `decide` changes nothing."""
        ...

    async def rewrap(
        self,
        reseal: Callable[[list[KeyRecord]], list[KeyRecord]],
        check: Callable[[list[KeyRecord]], None],
        reseal_secret: Callable[[str, bytes], bytes],
        actor: str,
        now: int,
    ) -> int:
        """Stores `reseal(current keys)` and runs `check` over the rows as written, and
        replaces every second factor's sealed secret with `reseal_secret(factor id, sealed)`,
        atomically and serialised like `change`; an exception from any changes nothing."""
        ...


def reload_interval(settings: Settings) -> int:
    """Seconds between reloads: a quarter of the JWKS cache lifetime, at most 30, at least 1."""
    return max(1, min(settings.jwks_max_age // 4, 30))


def publication_lag(settings: Settings) -> int:
    """How long after a key change every instance serves it, with margin: one reload
    interval, a second for whole-second timestamps (a key made at 10.9 s is stamped 10), and
    a second for the reload itself to finish."""
    return reload_interval(settings) + 2


class SigningKeys:
    def __init__(
        self,
        store: KeyStore,
        sealer: KeySealer,
        settings: Settings,
        clock: Callable[[], int],
        epoch: KeyEpoch | None = None,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._settings = settings
        self._clock = clock
        self._ring: KeyRing | None = None
        self._epoch = epoch or LocalEpoch()
        self._heard = 0  # key changes heard of from other instances (`changed_elsewhere`)
        self._news: anyio.Event | None = None  # set on hearing one; made by `keep_fresh`
        self._seen = (-1, -1)  # (epoch, heard) as of the ring's load; none loaded yet
        self._reloading = anyio.Lock()

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

    async def current(self) -> KeyRing:
        """The ring to sign with: reloaded first if the keys changed in another worker of this
        `serve` since it was loaded. One memory read when nothing changed; when something did,
        the requests that notice share one reload, and a failed reload fails them (a 503 if
        the database is away) rather than let them sign with a key that may be revoked."""
        if self._version() != self._seen:
            async with self._reloading:
                if self._version() != self._seen:  # else another request just reloaded
                    await self.reload()
        return self.ring

    def changed_elsewhere(self) -> None:
        """Another instance changed the keys (db/notify.py heard it): reload before signing
        again, as after a change in another worker; `keep_fresh` reloads at once, so that
        requests seldom wait for it."""
        self._heard += 1
        if self._news is not None:
            self._news.set()

    def _version(self) -> tuple[int, int]:
        return self._epoch.read(), self._heard

    async def reload(self) -> None:
        # Read before the keys: a change committed after this read moves the epoch (or is
        # heard of) again, and the next `current` reloads once more.
        version = self._version()
        records = await self._store.all()
        self._ring = KeyRing(
            records,
            self._sealer,
            now=self._clock(),
            retired_ttl=self._settings.access_token_ttl
            + self._settings.clock_leeway
            + publication_lag(self._settings),
        )
        self._seen = version

    async def _changed(self) -> None:
        """After a key change committed here: the other workers reload before they sign
        again, and this one reloads now (after the bump, so it need not reload twice)."""
        self._epoch.bump()
        await self.reload()

    @property
    def min_next_age(self) -> int:
        """A next key this old has been in every instance's JWKS for a full cache lifetime."""
        return self._settings.jwks_max_age + publication_lag(self._settings)

    async def records(self) -> list[KeyRecord]:
        return await self._store.all()

    async def rotate(self, actor: str, *, alg: str | None = None, force: bool = False) -> None:
        """next → active → retired and a new next key; KeyNotReady if the next key is young."""
        candidate = await self._candidate(alg or self._settings.signing_alg)
        now = self._clock()
        try:
            await self._store.change(
                lambda records: lifecycle.rotate(
                    records, candidate, now=now, min_age=self.min_next_age, force=force
                ),
                actor,
                now,
            )
        except Exception:
            # Also after a refusal: another instance may have rotated meanwhile.
            await self.reload()
            raise
        await self._changed()

    async def revoke(self, kid: str, actor: str) -> None:
        """The key leaves JWKS and stops signing in this `serve` at once (in other instances
        when they hear of it, else within an interval); its tokens are refused everywhere at
        once (the revocation check reads its state)."""
        candidate = await self._candidate(self._settings.signing_alg)
        now = self._clock()
        await self._store.change(
            lambda records: lifecycle.revoke(records, kid, candidate, now=now), actor, now
        )
        await self._changed()

    async def keep_fresh(self) -> None:
        """Reloads every `reload_interval` seconds, forever, and as soon as a change made
        elsewhere is heard of; a failed reload keeps the last good ring (the database may be
        briefly away) and is retried next time (the next signature tries it first, though)."""
        failed = False
        while True:
            self._news = anyio.Event()
            # Heard of before this loop ran (while the keys first loaded): reload now. After
            # a failure, not before the interval unless news comes: no retrying in a spin.
            if failed or self._version() == self._seen:
                with anyio.move_on_after(reload_interval(self._settings)):
                    await self._news.wait()
            failed = True
            try:
                async with self._reloading:  # not twice with a request that noticed too
                    await self.reload()
                failed = False
            except TemporarilyUnavailable as exc:  # an outage: one line, not a traceback a tick
                logger.warning("cannot reload the signing keys (%s); keeping the last ones", exc)
            except InvalidTag:  # the rows were rewrapped under a KEK this process lacks
                logger.error(
                    "cannot reload the signing keys: the active key does not open under "
                    "AUTHSERVER_KEY_ENCRYPTION_KEY or AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS "
                    "(rewrapped under another KEK?); keeping the last ones"
                )
            except Exception:
                logger.exception("reloading the signing keys failed; keeping the last ones")

    async def rewrap(self, new_kek: bytes, actor: str) -> int:
        """Re-seals every private key under `new_kek`, and every authenticator app's secret
        (second_factors.py) with them, in one transaction: each must open under the KEKs this
        process has (or already under the new one) and, once written, under the new KEK
        alone; else nothing changes (InvalidTag). Returns how many keys."""
        new = KeySealer(new_kek)
        opener = KeySealer(self._sealer.kek, *self._sealer.older_keks, new_kek)

        def check(records: list[KeyRecord]) -> None:
            for record in records:
                new.open(record.kid, record.sealed_private_key)

        return await self._store.rewrap(
            lambda records: [opener.rewrap(record, new) for record in records],
            check,
            lambda factor_id, sealed: reseal_totp(opener, new, factor_id, sealed),
            actor,
            self._clock(),
        )

    async def rotate_if_due(self, actor: str = "scheduler") -> bool:
        """One scheduled rotation (AUTHSERVER_KEY_ROTATION_INTERVAL), if the active key is
        that old and the next key ready; True if this call rotated."""
        interval = self._settings.key_rotation_interval
        if not interval or not lifecycle.is_due(
            self.ring.records, now=self._clock(), interval=interval, min_age=self.min_next_age
        ):
            return False  # the common case (as this instance last saw the keys): no key made
        candidate = await self._candidate(self._settings.signing_alg)
        now = self._clock()
        transition = await self._store.change(
            lambda records: lifecycle.rotate_if_due(
                records, candidate, now=now, interval=interval, min_age=self.min_next_age
            ),
            actor,
            now,
        )
        if not transition.events:
            await self.reload()  # another instance rotated first: its keys, here now
            return False
        await self._changed()
        logger.info("scheduled key rotation: %s now signs", self.ring.signing.kid)
        return True

    async def rotate_on_schedule(self) -> None:
        """Checks every `reload_interval` seconds whether a scheduled rotation is due; runs
        in every instance, and the store's serialised transaction lets one rotate."""
        while True:
            await anyio.sleep(reload_interval(self._settings))
            try:
                await self.rotate_if_due()
            except TemporarilyUnavailable as exc:
                logger.warning("cannot check the scheduled key rotation (%s)", exc)
            except Exception:
                logger.exception("the scheduled key rotation failed; retrying later")

    async def _candidate(self, alg: str) -> KeyRecord:
        # Made before the transaction (RSA takes ~0.1 s), and only stored if the change uses it.
        new = await anyio.to_thread.run_sync(make_key, alg, "next", self._sealer, self._clock())
        return new.record
