"""Three real `authserver serve` processes on one Postgres, driven round robin over real HTTP.

Logins start families on all three; refresh chains hop to another instance at every step; one
token is raced on all three at once; spent tokens are replayed on an instance that did not
spend them; sessions end (/logout, /logout/all) on an instance that did not start them; and the
keys rotate through the admin API on one instance while all of that goes on. Afterwards every
access token issued anywhere verifies against every instance's JWKS, no answer was a 5xx, and
the database holds what API.md promises: one active key; at most one live refresh token per
family; every reuse left its family revoked, every logout too; and its rows count exactly the
logins and rotations that succeeded.

Checks record what they find rather than stop at the first failure: a broken invariant shows
everything it broke at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.app import build_services
from authserver.config import Settings
from authserver.tokens.refresh import hash_token
from tests.conftest import ISSUER, Registry, reset_keys
from tests.races._instances import Instance, serving

# Also through PgBouncer in transaction mode (tests/_pgbouncer.py).
pytestmark = pytest.mark.pgbouncer
INSTANCES = 3
# Instances reload their keys every second, and a next key may sign 2 + 3 s after it is made:
# the rotation comes a few seconds into the traffic, not at its start.
JWKS_MAX_AGE = 2
USERS = [f"user{n}" for n in range(6)]
LOGINS = 36  # login n goes to instance n % 3, as user n // 3 % 6
# What each login's family is for, in login order, so every role has families of every
# instance; the remaining ones stay idle.
CHAINS, RACES, REPLAYS, LOGOUTS = 12, 9, 6, 6
LEAVER = "leaver"  # logs in once on each instance, then out of all three with /logout/all
MIN_CHAIN = 6  # refreshes per chain at least; chains go on until the rotation has settled
RACERS_PER_INSTANCE = 3
STEP_PAUSE = 0.1  # between a chain's refreshes: steady traffic, not a benchmark
STAGGER = 0.2  # between the starts of the other scenarios, spreading them over the rotation
ROTATE_ON = 0  # the instance the operator calls


@dataclass(frozen=True)
class Cluster:
    instances: list[Instance]
    service_secret: str  # of "svc": client_credentials, scopes profile and admin


@pytest.fixture
async def cluster(
    database_url: str, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Cluster]:
    if not database_url.startswith("postgresql"):
        pytest.skip("several instances share a Postgres; the embedded SQLite is one instance")
    await reset_keys(engine)
    registry = Registry(build_services(settings, engine))
    await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
    secret = await registry.client("svc", scopes=("profile", "admin"))
    assert secret is not None
    for username in [*USERS, LEAVER]:
        await registry.user(username)
    overrides = {
        "JWKS_MAX_AGE": str(JWKS_MAX_AGE),
        "ACCESS_TOKEN_TTL": "300",
        "TRUSTED_PROXIES": "127.0.0.1",  # the test plays the proxy: X-Forwarded-For per login
    }
    try:
        async with serving(
            INSTANCES, database_url, settings.keys_dir, tmp_path, overrides
        ) as instances:
            yield Cluster(instances, secret)
    finally:
        await reset_keys(engine)


@dataclass(frozen=True)
class Session:
    """One family as its client holds it: the newest tokens and the instance that issued them."""

    sid: str
    refresh_token: str
    access_token: str
    issuer: int


@dataclass(frozen=True)
class Answer:
    where: str
    status: int
    body: str


@dataclass
class Traffic:
    """Every request goes through here: it records each answer, each access token issued, and
    what the database must show for each family at the end."""

    http: httpx.AsyncClient
    cluster: Cluster
    answers: list[Answer] = field(default_factory=list)
    issued: list[tuple[int, str]] = field(default_factory=list)  # (instance, access token)
    logins: int = 0
    attempts: int = 0  # logins asked for, each from an address of its own
    rotations: int = 0  # refreshes answered 200
    # sid -> the family's revoked_reason at the end (None: alive)
    expected: dict[str, str | None] = field(default_factory=dict)
    live: dict[str, str] = field(default_factory=dict)  # sid -> its one live refresh token
    reused: set[str] = field(default_factory=set)  # sids whose spent tokens were presented
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    async def request(self, at: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
        index = at % INSTANCES
        url = self.cluster.instances[index].url
        response = await self.http.request(method, f"{url}{path}", **kwargs)
        self.answers.append(
            Answer(f"{method} {path} on {index}", response.status_code, response.text)
        )
        return response

    def _issued(self, at: int, response: httpx.Response) -> Session:
        body = response.json()
        token: str = body["access_token"]
        self.issued.append((at % INSTANCES, token))
        sid = jwt.decode(token, options={"verify_signature": False})["sid"]
        return Session(sid, body["refresh_token"], token, at % INSTANCES)

    async def login(self, at: int, username: str) -> Session:
        data = {
            "grant_type": "password",
            "username": username,
            "password": "correct horse",
            "client_id": "spa",
        }
        # Each login from an address of its own, as users' are: 36 at once from one address
        # would meet that address's failure budget (throttle.ADDRESS: every attempt is counted
        # until it succeeds), which made this test fail whenever the machine was slow.
        self.attempts += 1
        address = {"X-Forwarded-For": f"10.0.{self.attempts // 250}.{self.attempts % 250 + 1}"}
        response = await self.request(at, "POST", "/token", data=data, headers=address)
        assert response.status_code == 200, response.text
        self.logins += 1
        return self._issued(at, response)

    async def refresh(self, at: int, session: Session) -> Session | httpx.Response:
        """The next session on success, else the refusal."""
        data = {"refresh_token": session.refresh_token, "client_id": "spa"}
        response = await self.request(at, "POST", "/refresh", data=data)
        if response.status_code != 200:
            return response
        self.rotations += 1
        return self._issued(at, response)

    async def refused(self, at: int, session: Session, what: str) -> None:
        """Presents the session's refresh token, which must be a clean invalid_grant."""
        outcome = await self.refresh(at, session)
        if isinstance(outcome, Session):
            self.problems.append(f"{what} ({session.sid}, on {at % INSTANCES}) was rotated")
        else:
            self.check_invalid_grant(outcome, f"{what} ({session.sid})")

    def check_invalid_grant(self, response: httpx.Response, what: str) -> None:
        self.check(
            response.status_code == 400 and error_of(response) == "invalid_grant",
            f"{what}: {response.status_code} {response.text}",
        )

    async def service_token(self, at: int, scope: str = "profile") -> str:
        data = {"grant_type": "client_credentials", "scope": scope}
        auth = ("svc", self.cluster.service_secret)
        response = await self.request(at, "POST", "/token", data=data, auth=auth)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        self.issued.append((at % INSTANCES, token))
        return token

    async def active(self, at: int, access_token: str) -> bool:
        auth = ("svc", self.cluster.service_secret)
        data = {"token": access_token}
        response = await self.request(at, "POST", "/introspect", data=data, auth=auth)
        assert response.status_code == 200, response.text
        active: bool = response.json()["active"]
        return active


def error_of(response: httpx.Response) -> str | None:
    try:
        error: str = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return None
    return error


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


# --- scenarios ------------------------------------------------------------------------------


async def chain(run: Traffic, session: Session, settled: anyio.Event) -> None:
    """Each refresh on the instance after the one that issued the token, until the rotation
    has settled everywhere; the family stays alive with the last token as its one live one."""
    steps = 0
    while steps < MIN_CHAIN or not settled.is_set():
        outcome = await run.refresh(session.issuer + 1, session)
        if not isinstance(outcome, Session):
            run.problems.append(f"chain {session.sid} step {steps}: {outcome.text}")
            return
        session = outcome
        run.live[session.sid] = session.refresh_token
        steps += 1
        await anyio.sleep(STEP_PAUSE)


async def race(run: Traffic, session: Session) -> None:
    """One (already rotated) token on all three instances at once, several times each: exactly
    one rotation; the losers presented a spent token, so the family dies, winner's token too."""
    rotated = await run.refresh(session.issuer + 1, session)
    if not isinstance(rotated, Session):
        run.problems.append(f"race {session.sid}, first refresh: {rotated.text}")
        return
    outcomes: list[Session | httpx.Response] = []

    async def racer(at: int) -> None:
        outcomes.append(await run.refresh(at, rotated))

    async with anyio.create_task_group() as racers:
        for at in range(INSTANCES * RACERS_PER_INSTANCE):
            racers.start_soon(racer, at)
    winners = [outcome for outcome in outcomes if isinstance(outcome, Session)]
    run.check(len(winners) == 1, f"race {session.sid}: {len(winners)} rotations, not 1")
    for outcome in outcomes:
        if not isinstance(outcome, Session):
            run.check_invalid_grant(outcome, f"race {session.sid}, a loser")
    for winner in winners:
        await run.refused(winner.issuer + 1, winner, "the race winner's token after the reuse")
    run.reused.add(session.sid)


async def replay(run: Traffic, session: Session) -> None:
    """A token spent on one instance, presented again on another: reuse, the family dies."""
    newer = await run.refresh(session.issuer + 1, session)
    if not isinstance(newer, Session):
        run.problems.append(f"replay {session.sid}, first refresh: {newer.text}")
        return
    await run.refused(session.issuer + 2, session, "a spent token")
    await run.refused(session.issuer, newer, "the newest token after a replay")
    run.reused.add(session.sid)


async def logout(run: Traffic, session: Session) -> None:
    """/logout on an instance that issued neither token ends the family and the access token."""
    newer = await run.refresh(session.issuer + 1, session)
    if not isinstance(newer, Session):
        run.problems.append(f"logout {session.sid}, first refresh: {newer.text}")
        return
    response = await run.request(
        newer.issuer + 1,
        "POST",
        "/logout",
        data={"refresh_token": newer.refresh_token},
        headers=bearer(newer.access_token),
    )
    run.check(response.status_code == 204, f"logout {session.sid}: {response.text}")
    await run.refused(newer.issuer + 2, newer, "a refresh after logout")
    run.check(
        not await run.active(newer.issuer, newer.access_token),
        f"logout {session.sid}: its access token still introspects active",
    )


async def log_out_everywhere(run: Traffic, sessions: Sequence[Session]) -> None:
    """/logout/all on another instance than issued the bearer token ends the user's families
    on all three."""
    first = sessions[0]
    response = await run.request(
        first.issuer + 1, "POST", "/logout/all", headers=bearer(first.access_token)
    )
    run.check(response.status_code == 204, f"logout/all: {response.status_code} {response.text}")
    for session in sessions:
        await run.refused(session.issuer + 1, session, "a refresh after logout/all")
        run.check(
            not await run.active(session.issuer + 2, session.access_token),
            f"logout/all {session.sid}: its access token still introspects active",
        )


@dataclass
class Rotation:
    """The operator's rotation on one instance, by the rules: 409 key_not_ready until the next
    key has been published long enough; then every instance must pick up the new key."""

    run: Traffic
    old_kid: str
    settled: anyio.Event = field(default_factory=anyio.Event)
    new_kid: str = ""
    refused: int = 0

    async def __call__(self, admin_token: str) -> None:
        while True:
            response = await self.run.request(
                ROTATE_ON,
                "POST",
                "/admin/keys/rotate",
                json={"force": False},
                headers=bearer(admin_token),
            )
            if response.status_code == 200:
                break
            assert response.status_code == 409, response.text
            assert error_of(response) == "key_not_ready", response.text
            self.refused += 1
            await anyio.sleep(int(response.headers["retry-after"]))
        active = [k["kid"] for k in response.json()["keys"] if k["state"] == "active"]
        # Recorded, not asserted: the database check then says what else that broke.
        self.run.check(len(active) == 1, f"active keys after the rotation: {active}")
        self.new_kid = next(kid for kid in active if kid != self.old_kid)
        # Each instance reloads within a second; it then signs with the new key.
        for at in range(INSTANCES):
            with anyio.move_on_after(10):
                while (kid := kid_of(await self.run.service_token(at))) != self.new_kid:
                    await anyio.sleep(0.2)
            assert kid == self.new_kid, f"instance {at} still signs with {kid} after 10 s"
        self.settled.set()


def interleaved(
    *groups: Sequence[Callable[[], Awaitable[None]]],
) -> list[Callable[[], Awaitable[None]]]:
    """Round robin over the groups, so each kind of scenario runs before, during and after."""
    longest = max(len(group) for group in groups)
    return [group[n] for n in range(longest) for group in groups if n < len(group)]


async def after(delay: float, scenario: Callable[[], Awaitable[None]]) -> None:
    await anyio.sleep(delay)
    await scenario()


# --- checks afterwards ------------------------------------------------------------------------


async def jwks_problems(run: Traffic, old_kid: str, new_kid: str) -> list[str]:
    """Every access token issued by any instance verifies against every instance's JWKS, and
    every instance signed with both keys: the traffic spanned the rotation everywhere."""
    problems = []
    signed: dict[int, set[str]] = defaultdict(set)
    for issuer, token in run.issued:
        signed[issuer].add(kid_of(token))
    for index in range(INSTANCES):
        if not {old_kid, new_kid} <= signed[index]:
            problems.append(f"instance {index} signed with {signed[index]}, not old and new")
    published = []
    unpublished: dict[tuple[int, str], set[int]] = defaultdict(set)  # (JWKS of, kid): signers
    for at in range(INSTANCES):
        response = await run.request(at, "GET", "/.well-known/jwks.json")
        keys = {key["kid"]: jwt.PyJWK(key) for key in response.json()["keys"]}
        published.append(set(keys))
        for issuer, token in run.issued:
            key = keys.get(kid_of(token))
            if key is None:
                unpublished[at, kid_of(token)].add(issuer)
                continue
            try:
                jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm_name],
                    audience="authserver-api",
                    issuer=ISSUER,
                )
            except jwt.PyJWTError as exc:
                problems.append(f"a token of {issuer} fails against the JWKS of {at}: {exc!r}")
    for (at, kid), signers in sorted(unpublished.items()):
        problems.append(f"the JWKS of {at} lacks {kid}, which {sorted(signers)} signed with")
    if any(kids != published[0] for kids in published):
        problems.append(f"the instances publish different key sets: {published}")
    return problems


async def database_problems(
    engine: AsyncEngine, run: Traffic, old_kid: str, new_kid: str
) -> list[str]:
    problems: list[str] = []

    def check(ok: bool, problem: str) -> None:
        if not ok:
            problems.append(problem)

    async with engine.connect() as conn:
        keys = {
            kid: state for kid, state in await rows(conn, "SELECT kid, state FROM signing_keys")
        }
        active = [kid for kid, state in keys.items() if state == "active"]
        check(active == [new_kid], f"active keys {active}, not just the rotated-in {new_kid}")
        check(keys.get(old_kid) == "retired", f"the key before the rotation is {keys.get(old_kid)}")

        families = {
            sid: reason
            for sid, reason in await rows(
                conn, "SELECT id::text, revoked_reason FROM refresh_families"
            )
        }
        # One family per login, each revoked for the reason its scenario gives, or alive.
        check(
            families == run.expected,
            "families not as expected (sid: found, expected): "
            + repr(
                {
                    sid: (families.get(sid, "missing"), run.expected.get(sid, "unexpected"))
                    for sid in families.keys() | run.expected.keys()
                    if families.get(sid, "missing") != run.expected.get(sid, "unexpected")
                }
            ),
        )

        # Strict mode (no grace): a family never holds two unspent tokens, live or not.
        unspent: dict[str, list[str]] = defaultdict(list)
        for sid, token_hash in await rows(
            conn,
            "SELECT family_id::text, encode(token_hash, 'hex') FROM refresh_tokens"
            " WHERE spent_at IS NULL UNION ALL"  # the live one in its family's row (0030)
            " SELECT id::text, encode(token_hash, 'hex') FROM refresh_families"
            " WHERE token_hash IS NOT NULL",
        ):
            unspent[sid].append(token_hash)
        crowded = {sid: len(hashes) for sid, hashes in unspent.items() if len(hashes) > 1}
        check(not crowded, f"families with several unspent tokens: {crowded}")
        for sid, token in run.live.items():
            check(
                unspent.get(sid) == [hash_token(token)],
                f"alive family {sid}: unspent {unspent.get(sid)}, not the client's newest token",
            )

        # Every reuse the servers detected left its family revoked for reuse, and they detected
        # exactly the reuses the test committed.
        reuse_seen = {
            sid
            for (sid,) in await rows(
                conn,
                "SELECT DISTINCT family_id FROM audit_events"
                " WHERE action = 'refresh.reuse_detected'",
            )
        }
        not_revoked = [
            sid
            for (sid,) in await rows(
                conn,
                "SELECT DISTINCT e.family_id FROM audit_events AS e"
                " JOIN refresh_families AS f ON f.id::text = e.family_id"
                " WHERE e.action = 'refresh.reuse_detected'"
                " AND f.revoked_reason IS DISTINCT FROM 'reuse'",
            )
        ]
        check(not not_revoked, f"reuse detected but family not revoked for it: {not_revoked}")
        check(
            reuse_seen == run.reused,
            f"reuse detected in {len(reuse_seen)} families, presented in {len(run.reused)}:"
            f" {reuse_seen ^ run.reused}",
        )

        # Every successful refresh spent one token and stored exactly one successor; nothing else
        # spends or issues refresh tokens. (0030: each family's live token in its row with the
        # token spent last; every one spent before in spent_refresh_tokens.)
        counts = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(token_hash) FROM refresh_families),"
                    " (SELECT count(parent_hash) FROM refresh_families),"
                    " (SELECT count(*) FROM spent_refresh_tokens),"
                    " (SELECT count(*) FROM refresh_tokens)"
                )
            )
        ).one()
        live, last, before, apart = counts
        check(
            (live, last + before, apart) == (run.logins, run.rotations, 0),
            f"refresh tokens (live, spent last, spent before, in refresh_tokens) ="
            f" {tuple(counts)}; logins {run.logins}, rotations {run.rotations}",
        )
    return problems


async def rows(conn: AsyncConnection, sql: str) -> Sequence[Any]:
    return (await conn.execute(text(sql))).all()


# --- the test -------------------------------------------------------------------------------


async def test_three_instances_keep_every_invariant_under_mixed_traffic_and_a_rotation(
    cluster: Cluster, engine: AsyncEngine
) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        run = Traffic(http, cluster)
        with anyio.fail_after(90):
            sessions: dict[int, Session] = {}

            async def log_in(at: int, username: str) -> None:
                sessions[at] = await run.login(at, username)

            async with anyio.create_task_group() as logins:
                for n in range(LOGINS):
                    logins.start_soon(log_in, n, USERS[n // INSTANCES % len(USERS)])
                for n in range(INSTANCES):
                    logins.start_soon(log_in, LOGINS + n, LEAVER)
            ordered = [sessions[n] for n in range(LOGINS)]
            leaver = [sessions[LOGINS + n] for n in range(INSTANCES)]
            old_kid = kid_of(ordered[0].access_token)

            chains, rest = ordered[:CHAINS], ordered[CHAINS:]
            races, rest = rest[:RACES], rest[RACES:]
            replays, rest = rest[:REPLAYS], rest[REPLAYS:]
            logouts, idle = rest[:LOGOUTS], rest[LOGOUTS:]
            assert idle, "some families must stay untouched"
            for group, reason in [
                (chains, None),
                (races, "reuse"),
                (replays, "reuse"),
                (logouts, "logout"),
                (idle, None),
                (leaver, "logout_all"),
            ]:
                run.expected.update({session.sid: reason for session in group})
            run.live.update({session.sid: session.refresh_token for session in chains + idle})

            rotation = Rotation(run, old_kid)
            admin_token = await run.service_token(ROTATE_ON, scope="admin")
            scenarios = interleaved(
                [partial(race, run, session) for session in races],
                [partial(replay, run, session) for session in replays],
                [partial(logout, run, session) for session in logouts],
                [partial(log_out_everywhere, run, leaver)],
            )
            async with anyio.create_task_group() as traffic:
                traffic.start_soon(rotation, admin_token)
                for session in chains:
                    traffic.start_soon(chain, run, session, rotation.settled)
                for n, scenario in enumerate(scenarios):
                    traffic.start_soon(after, n * STAGGER, scenario)

        problems = run.problems + await jwks_problems(run, old_kid, rotation.new_kid)
    problems += await database_problems(engine, run, old_kid, rotation.new_kid)
    server_errors = [answer for answer in run.answers if answer.status >= 500]
    if server_errors:
        problems.append(f"{len(server_errors)} answers were 5xx, the first: {server_errors[0]}")
        problems += [f"log of {i}:\n{inst.log_tail()}" for i, inst in enumerate(cluster.instances)]

    assert not problems, "\n".join(problems)
    # The traffic was what the invariants are about: every login, every hop, every race.
    assert run.logins == LOGINS + INSTANCES
    assert run.rotations >= CHAINS * MIN_CHAIN + 2 * RACES + REPLAYS + LOGOUTS
