"""The primary killed with SIGKILL under load, and promoted away: Patroni over etcd
(tests/_patroni.py), a primary and a standby on loopback ports, three real `serve` processes
that list both hosts with target_session_attrs=read-write.

Six clients log in, refresh (each step on the next instance), introspect, log out and revoke,
bounded in count and time. A few seconds in, the primary stops streaming WAL for a second
or until the standby is STALL_LAG bytes behind (its WAL sender stopped, as a cut link would),
then its Patroni and Postgres are killed, and the standby is promoted once the leader key
expires. The load goes on until every instance has served again since the promotion (no
restart) and a little longer. Then, in SQL on the new primary and over HTTP: every rotation
answered 200 survived (its successor works, its parent stays spent: presenting it is reuse), no
family has two live tokens, every logout and revocation answered 2xx still holds, and no answer
was a 5xx other than 503 temporarily_unavailable.

With synchronous replication every check must hold. With asynchronous replication a commit
the primary acknowledged may not have reached the standby: what was lost is reported, not
asserted: the price of asynchronous commit, measured. Each run prints its figures: the
unavailability window (first to last 503), the requests answered 503, the rotations in doubt
(answered 503 but committed: the retry meets reuse) and those lost, and the standby's lag at
the kill.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from authserver.app import build_services
from authserver.db import migrate
from authserver.tokens.refresh import hash_token
from tests._patroni import LOOP_WAIT, MAXIMUM_LAG, TTL, patroni_bed
from tests.conftest import Registry, make_settings
from tests.races._instances import Instance, serving

pytestmark = pytest.mark.failover

CLIENTS = 6  # concurrent clients, each one request at a time
PAUSE = 0.02  # seconds between a client's requests
RETRY_PAUSE = 0.1  # seconds before retrying after a 503 or a refused connection
BEFORE_KILL = 3.0  # seconds of load before the primary is killed
STALL = 1.0  # of those, seconds in which the standby receives nothing (a cut link)...
# ...or fewer: the stall ends once the standby is this many bytes behind. Asynchronously, some
# acknowledged commits are then lost, yet the standby stays within MAXIMUM_LAG and is promoted
# (~100 KB/s of WAL here; a stall bounded in time only would lag more on a faster machine).
STALL_LAG = 256 * 1024
AFTER_RECOVERY = 2.0  # seconds of load once every instance has served again
DEADLINE = 60.0  # seconds: the load stops by then whatever happens


@dataclass
class Session:
    sid: str
    refresh_token: str
    access_token: str
    parent: str | None = None  # the refresh token this one's rotation spent
    doubt: bool = False  # its last refresh was answered 503: it may have committed


@dataclass
class Load:
    http: httpx.AsyncClient
    instances: list[Instance]
    secret: str
    started: float = field(default_factory=time.monotonic)
    answers: list[tuple[float, str, int, int, str]] = field(default_factory=list)
    rotations: list[tuple[str, str]] = field(default_factory=list)  # (parent, child), 200
    ended: list[tuple[str, Session]] = field(default_factory=list)  # logout/revoke, 2xx
    live: list[Session] = field(default_factory=list)  # each client's session at the end
    in_doubt: int = 0
    # Refused although the client did everything right: what a lost commit looks like.
    refused: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def call(self, at: int, op: str, path: str, **kwargs: Any) -> httpx.Response | None:
        index = at % len(self.instances)
        try:
            response = await self.http.post(f"{self.instances[index].url}{path}", **kwargs)
        except httpx.TransportError as exc:
            self.answers.append((time.monotonic(), op, index, 0, type(exc).__name__))
            return None
        error = ""
        if response.status_code >= 400:
            error = response.json().get("error", "")
        self.answers.append((time.monotonic(), op, index, response.status_code, error))
        return response

    def since(self, moment: float) -> list[tuple[float, str, int, int, str]]:
        return [answer for answer in self.answers if answer[0] >= moment]


def session_of(body: dict[str, Any], parent: str | None = None) -> Session:
    sid = jwt.decode(body["access_token"], options={"verify_signature": False})["sid"]
    return Session(sid, body["refresh_token"], body["access_token"], parent)


async def client(load: Load, index: int) -> None:
    at, step = index, 0
    session: Session | None = None
    while not load.stop.is_set():
        at, step = at + 1, step + 1
        await anyio.sleep(PAUSE)
        if session is None:
            data = {
                "grant_type": "password",
                "username": f"user{index}",
                "password": "correct horse",
                "client_id": "spa",
            }
            response = await load.call(at, "login", "/token", data=data)
            if response is not None and response.status_code == 200:
                session = session_of(response.json())
            else:
                await anyio.sleep(RETRY_PAUSE)
            continue
        if step % 12 == 0:  # the session ends: by /logout or by RFC 7009 /revoke
            if step % 24 == 0:
                how, path = "logout", "/logout"
                kwargs: dict[str, Any] = {
                    "data": {"refresh_token": session.refresh_token},
                    "headers": {"Authorization": f"Bearer {session.access_token}"},
                }
            else:
                how, path = "revoke", "/revoke"
                kwargs = {"data": {"token": session.refresh_token, "client_id": "spa"}}
            response = await load.call(at, how, path, **kwargs)
            if response is not None and response.status_code in (200, 204):
                load.ended.append((how, session))
                session = None
            else:  # not ended: the session goes on, and is ended at its next turn
                await anyio.sleep(RETRY_PAUSE)
            continue
        if step % 4 == 0:
            response = await load.call(
                at,
                "introspect",
                "/introspect",
                data={"token": session.access_token},
                auth=("svc", load.secret),
            )
            if response is not None and response.status_code == 200:
                if response.json().get("active") is not True:
                    load.refused.append(f"introspect: a live session's token {response.text}")
            continue
        data = {"refresh_token": session.refresh_token, "client_id": "spa"}
        response = await load.call(at, "refresh", "/refresh", data=data)
        if response is None or response.status_code == 503:
            session.doubt = True  # retried, with the same token
            await anyio.sleep(RETRY_PAUSE)
        elif response.status_code == 200:
            rotated = session_of(response.json(), parent=session.refresh_token)
            load.rotations.append((session.refresh_token, rotated.refresh_token))
            session = rotated
        elif session.doubt and response.json().get("error") == "invalid_grant":
            load.in_doubt += 1  # the 503 had committed; the retry was reuse
            session = None
        elif response.json().get("error") == "invalid_grant":
            load.refused.append(f"refresh: {response.text}")
            session = None
        else:
            load.problems.append(f"refresh: {response.status_code} {response.text}")
            session = None
    if session is not None and not session.doubt:
        load.live.append(session)


async def prepare(url: str, keys_dir: Path) -> str:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        await migrate.upgrade(engine)
        registry = Registry(build_services(make_settings(url, keys_dir), engine))
        await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
        secret = await registry.client("svc", scopes=("profile",))
        assert secret is not None
        for index in range(CLIENTS):
            await registry.user(f"user{index}", "correct horse")
        return secret
    finally:
        await engine.dispose()


async def stored(url: str) -> dict[str, Any]:
    """The refresh tokens and families as the new primary has them."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            tokens = {
                row.token_hash: row
                for row in await conn.execute(
                    text(  # the live ones in their families' rows, the spent apart (0030)
                        "SELECT encode(token_hash, 'hex') AS token_hash, id AS family_id,"
                        " NULL AS spent_at FROM refresh_families WHERE token_hash IS NOT NULL"
                        " UNION ALL SELECT encode(parent_hash, 'hex'), id, parent_spent_at"
                        " FROM refresh_families WHERE parent_hash IS NOT NULL"
                        " UNION ALL SELECT encode(token_hash, 'hex'), family_id, spent_at"
                        " FROM spent_refresh_tokens"
                    )
                )
            }
            revoked = {
                row.id: row.revoked_reason
                for row in await conn.execute(
                    text("SELECT id::text AS id, revoked_reason FROM refresh_families")
                )
            }
            # A family's row holds one live token, whatever happens (0030): a token both
            # live and spent would be two.
            doubled = (
                await conn.execute(
                    text(
                        "SELECT f.id FROM refresh_families f LEFT JOIN spent_refresh_tokens s"
                        " ON s.family_id = f.id AND s.token_hash = f.token_hash"
                        " WHERE f.revoked_reason IS NULL"
                        " AND (s.token_hash IS NOT NULL OR f.parent_hash = f.token_hash)"
                    )
                )
            ).all()
        return {"tokens": tokens, "revoked": revoked, "doubled": doubled}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("synchronous", [True, False], ids=["synchronous", "asynchronous"])
async def test_the_primary_killed_mid_load(
    synchronous: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = tmp_path / "keys"
    async with patroni_bed(synchronous=synchronous) as bed:
        secret = await prepare(bed.url, keys_dir)
        overrides = {"DB_POOL_SIZE": "4"}
        async with (
            serving(3, bed.url, keys_dir, tmp_path, overrides) as instances,
            httpx.AsyncClient(trust_env=False, timeout=15) as http,
        ):
            load = Load(http, instances, secret)
            async with anyio.create_task_group() as clients:
                for index in range(CLIENTS):
                    clients.start_soon(client, load, index)
                await anyio.sleep(BEFORE_KILL - STALL)
                old = await bed.primary()
                assert old is not None
                # The standby falls behind: asynchronous commits go on being acknowledged,
                # synchronous ones wait for it.
                stall = await bed.stall_replication(lag=STALL_LAG, seconds=STALL)
                killed_at = time.monotonic()
                bed.kill(old)
                bed.end(stall.sender)
                promoted_at = None
                with anyio.move_on_after(DEADLINE - BEFORE_KILL):
                    while await bed.primary() is None:
                        await anyio.sleep(0.1)
                    promoted_at = time.monotonic()
                    # Until every instance has answered a 200 since: one stamped just after the
                    # kill may still come from the old primary (a backend outlives its killed
                    # postmaster until its query ends), long before any promotion.
                    while {a[2] for a in load.since(promoted_at) if a[3] == 200} != {0, 1, 2}:
                        await anyio.sleep(0.1)
                    await anyio.sleep(AFTER_RECOVERY)
                load.stop.set()
            lagged = f"the standby was {stall.lag} bytes behind at the kill (limit {MAXIMUM_LAG})"
            assert promoted_at is not None, f"no promotion: {await bed.roles()}; {lagged}"
            new = await bed.primary()
            assert new is not None and new is not old, await bed.roles()

            # Over HTTP: each live session's newest token works, and its parent is reuse.
            verdicts: list[str] = []
            for number, session in enumerate(load.live):
                data = {"refresh_token": session.refresh_token, "client_id": "spa"}
                response = await http.post(f"{instances[number % 3].url}/refresh", data=data)
                if response.status_code != 200:
                    verdicts.append(f"newest token of {session.sid}: {response.text}")
                    continue
                if session.parent is not None:
                    data["refresh_token"] = session.parent
                    response = await http.post(f"{instances[number % 3].url}/refresh", data=data)
                    if response.json().get("error") != "invalid_grant":
                        verdicts.append(f"parent of {session.sid}: {response.text}")
            for how, session in load.ended:  # every 2xx logout and revocation still holds
                data = {"refresh_token": session.refresh_token, "client_id": "spa"}
                response = await http.post(f"{instances[0].url}/refresh", data=data)
                if response.json().get("error") != "invalid_grant":
                    verdicts.append(f"{how} of {session.sid} undone: {response.text}")
            stored_now = await stored(bed.url)

    tokens, revoked = stored_now["tokens"], stored_now["revoked"]
    lost = [
        (parent, child)
        for parent, child in load.rotations
        if hash_token(child) not in tokens
        or tokens.get(hash_token(parent)) is None
        or tokens[hash_token(parent)].spent_at is None
    ]
    # A session ended with a 2xx whose family is live again (a family unknown there, whose
    # login was lost too, is gone altogether: not counted).
    undone = [s.sid for _, s in load.ended if s.sid in revoked and revoked[s.sid] is None]
    statuses = Counter(answer[3] for answer in load.answers)
    unavailable = [a for a in load.answers if a[3] in (0, 503)]
    window = unavailable[-1][0] - unavailable[0][0] if unavailable else 0.0
    wrong_5xx = [
        a for a in load.answers if a[3] >= 500 and (a[3], a[4]) != (503, "temporarily_unavailable")
    ]
    figures = (
        f"failover ({'synchronous' if synchronous else 'asynchronous'} replication): "
        f"{len(load.answers)} requests, {dict(sorted(statuses.items()))}; {lagged}; "
        f"promoted {promoted_at - killed_at:.2f} s after the kill; "
        f"unavailable from {unavailable[0][0] - killed_at:.2f} s after the kill "
        f"for {window:.2f} s (first to last 503 or refused connection), "
        f"{len(unavailable)} requests answered so; {len(load.rotations)} rotations answered 200, "
        f"{len(lost)} of them lost; {load.in_doubt} in doubt (503 but committed); "
        f"{len(load.refused)} valid tokens refused afterwards; "
        f"{len(load.ended)} logouts/revocations, {len(undone)} undone; "
        f"{len(stored_now['doubled'])} families with two live tokens"
        if unavailable
        else "failover: no request met the outage"
    )
    with capsys.disabled():
        print(f"\n{figures}")  # noqa: T201 — the figures the issue asks for

    served_again = {a[2] for a in load.since(promoted_at) if a[3] == 200}
    assert served_again == {0, 1, 2}, f"instances serving again: {served_again}; {figures}"
    assert not wrong_5xx, wrong_5xx[:5]
    assert not load.problems, load.problems[:5]
    assert not stored_now["doubled"]
    if synchronous:  # what synchronous commit buys: nothing acknowledged is lost
        assert not lost, f"{len(lost)} rotations answered 200 are gone: {figures}"
        assert not undone, undone
        assert not load.refused, load.refused[:5]
        assert not verdicts, verdicts[:5]


async def test_a_standby_too_far_behind_is_not_promoted() -> None:
    """The bed's premise, checked: past MAXIMUM_LAG Patroni leaves the cluster without a primary
    rather than promote a standby that would lose that much (what the stall above stays within).
    The WAL is written in one known amount: a logical-decoding message, no load."""
    async with patroni_bed(synchronous=False) as bed:
        old = await bed.primary()
        assert old is not None
        (standby,) = (node for node in bed.nodes if node is not old)
        stall = await bed.stall_replication(lag=0, seconds=0)
        conn = await asyncpg.connect(host="127.0.0.1", port=old.port, user="postgres")
        try:
            written = await conn.fetchval(
                "SELECT pg_wal_lsn_diff(pg_logical_emit_message(false, 'authserver', $1), '0/0')"
                "::bigint",
                "x" * 2 * MAXIMUM_LAG,
            )
        finally:
            await conn.close()
        with anyio.fail_after(30):  # the leader's Patroni reports it within a loop_wait
            while await bed.leader_wal_position() < written:
                await anyio.sleep(0.2)
        bed.kill(old)
        bed.end(stall.sender)
        log = bed.tmp / f"{standby.name}.log"
        with anyio.fail_after(TTL + 30):  # once the leader key has expired
            while "My wal position exceeds maximum replication lag" not in log.read_text():
                await anyio.sleep(0.2)
        await anyio.sleep(2 * LOOP_WAIT)  # a few more rounds: still no promotion
        assert await bed.primary() is None, await bed.roles()
        assert await bed.roles() == {standby.name: "replica/running"}
