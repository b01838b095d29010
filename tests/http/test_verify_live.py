"""The verifier kit against the real server under uvicorn, over loopback HTTP: discovery,
the JWKS cache, the RFC 8725 catalogue, and the revocation feed. Nothing shared in memory."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import joserfc.errors
import joserfc.jwk
import joserfc.jwt
import jwcrypto.jwk
import jwcrypto.jwt
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import authserver_verify as verify
from authserver.app import build_services, create_app
from authserver.config import Settings
from authserver.services import Services
from authserver_verify import (
    Fetched,
    IntrospectionUnavailable,
    Introspector,
    Verifier,
    urllib_fetch,
)
from authserver_verify.starlette import BearerAuthMiddleware, require_active
from tests._uvicorn import Served, loopback_socket, served, url_of
from tests.conftest import Registry, make_settings, password_login
from tests.http.hostile import HOSTILE, forge, hostile_token
from tests.http.test_live_server import delete_signing_keys


@dataclass
class Live:
    url: str
    settings: Settings
    services: Services  # a second instance over the same database: for hostile tokens
    running: Served

    async def stop(self) -> None:
        await self.running.stop()


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Recorder:
    """urllib_fetch, with every request's URL and answer status written down."""

    fetch: verify.Fetch = field(default_factory=urllib_fetch)
    seen: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, url: str, headers: dict[str, str]) -> Fetched:
        try:
            fetched = self.fetch(url, headers)
        except OSError:
            self.seen.append((url, 0))
            raise
        self.seen.append((url, fetched.status))
        return fetched

    def jwks(self) -> list[int]:
        return [status for url, status in self.seen if url.endswith("/jwks.json")]


@pytest.fixture
def live_overrides() -> dict[str, str]:
    """Settings for the live server; parametrize a test over it to change them."""
    return {}


@pytest.fixture(params=["RS256", "EdDSA"])
async def live(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    engine: AsyncEngine,
    live_overrides: dict[str, str],
) -> AsyncIterator[Live]:
    """As tests/http/test_live_server.py's fixture, plus a way to stop the server mid-test."""
    sock = loopback_socket()
    url = url_of(sock)
    settings = make_settings(
        database_url, tmp_path / "keys", issuer=url, signing_alg=request.param, **live_overrides
    )
    await delete_signing_keys(engine)
    try:
        async with served(create_app(settings), sock) as running:
            services = build_services(settings, engine)
            await services.keys.start()
            registry = Registry(services)
            await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
            await registry.user("alice", "correct horse")
            yield Live(url, settings, services, running)
    finally:
        await delete_signing_keys(engine)


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, trust_env=False, timeout=10) as client:
        yield client


async def log_in(http: httpx.AsyncClient) -> dict[str, str]:
    response = await password_login(http)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_tokens_verify_through_discovery_sync_and_async(
    live: Live, http: httpx.AsyncClient
) -> None:
    recorder = Recorder()
    verifier = Verifier(live.url, live.settings.audience, fetch=recorder)
    token = (await log_in(http))["access_token"]

    claims = await anyio.to_thread.run_sync(verifier.verify, token)
    again = await verifier.verify_async((await log_in(http))["access_token"])

    assert claims["iss"] == again["iss"] == live.url
    assert claims["client_id"] == "spa"
    assert recorder.seen == [
        (f"{live.url}/.well-known/oauth-authorization-server", 200),
        (f"{live.url}/.well-known/jwks.json", 200),
    ]


def _extra_hostile(live: Live, genuine: str) -> dict[str, str]:
    head, payload, signature = genuine.split(".")
    header = jwt.get_unverified_header(genuine)
    es256 = _b64(json.dumps({**header, "alg": "ES256"}).encode())
    duplicate = _b64(b'{"sub":"a","sub":"b"}')
    return {
        "crit": forge(live.services, genuine, header={"crit": ["exp"]}),
        "future_nbf": forge(live.services, genuine, claims={"nbf": int(time.time()) + 3600}),
        # CVE-2022-21449: (r, s) = (0, 0) passes a broken ECDSA verifier.
        "psychic_ecdsa": f"{es256}.{payload}.{_b64(bytes(64))}",
        "duplicate_member": f"{head}.{duplicate}.{signature}",
        "garbage": "garbage",
        "empty_signature": f"{head}.{payload}.",
    }


async def test_every_hostile_token_of_the_catalogue_is_refused(
    live: Live, http: httpx.AsyncClient
) -> None:
    verifier = Verifier(live.url, live.settings.audience)
    genuine = (await log_in(http))["access_token"]
    # The control: the same forging path, changing nothing, is accepted.
    assert await verifier.verify_async(forge(live.services, genuine))

    hostile = {kind: hostile_token(kind, live.services, genuine) for kind in HOSTILE}
    hostile.update(_extra_hostile(live, genuine))
    accepted = []
    for kind, token in hostile.items():
        try:
            await verifier.verify_async(token)
        except verify.InvalidToken:
            continue
        accepted.append(kind)
    assert accepted == []


async def test_the_jwks_cache_honours_max_age_and_etag(live: Live, http: httpx.AsyncClient) -> None:
    recorder, monotonic = Recorder(), Monotonic()
    verifier = Verifier(live.url, live.settings.audience, fetch=recorder, monotonic=monotonic)
    for _ in range(3):
        await verifier.verify_async((await log_in(http))["access_token"])
    assert recorder.jwks() == [200]

    monotonic.now += live.settings.jwks_max_age + 1
    await verifier.verify_async((await log_in(http))["access_token"])
    assert recorder.jwks() == [200, 304]


async def test_an_unknown_kid_refetches_exactly_once_within_the_cooldown(
    live: Live, http: httpx.AsyncClient
) -> None:
    recorder, monotonic = Recorder(), Monotonic()
    verifier = Verifier(live.url, live.settings.audience, fetch=recorder, monotonic=monotonic)
    genuine = (await log_in(http))["access_token"]
    await verifier.verify_async(genuine)
    monotonic.now += 31  # past the cooldown of the first fetch

    for i in range(25):
        junk = forge(live.services, genuine, header={"kid": f"junk-{i}"})
        with pytest.raises(verify.UnknownKey):
            await verifier.verify_async(junk)

    assert recorder.jwks() == [200, 304]


async def test_the_last_good_key_set_is_served_while_the_server_is_down(
    live: Live, http: httpx.AsyncClient
) -> None:
    recorder, monotonic = Recorder(), Monotonic()
    verifier = Verifier(live.url, live.settings.audience, fetch=recorder, monotonic=monotonic)
    tokens = [(await log_in(http))["access_token"] for _ in range(3)]
    await verifier.verify_async(tokens[0])
    await live.stop()
    monotonic.now += live.settings.jwks_max_age + 1

    assert await verifier.verify_async(tokens[1])
    assert await verifier.verify_async(tokens[2])
    assert recorder.jwks() == [200, 0]  # one failed attempt, none more within the cooldown
    with pytest.raises(verify.KeySetUnavailable):
        await Verifier(live.url, live.settings.audience).verify_async(tokens[0])


async def test_a_logout_reaches_the_verifier_through_the_feed_within_the_poll_interval(
    live: Live, http: httpx.AsyncClient
) -> None:
    secret = await Registry(live.services).client("orders-api")
    assert secret is not None
    poll = 0.2
    verifier = Verifier(
        live.url,
        live.settings.audience,
        revocations_url=f"{live.url}/revocations",
        client_id="orders-api",
        client_secret=secret,
        poll_interval=poll,
    )
    session, other = await log_in(http), await log_in(http)
    with verifier:
        assert await verifier.verify_async(session["access_token"])  # now cached
        response = await http.post("/logout", data={"refresh_token": session["refresh_token"]})
        assert response.status_code == 204
        started = time.monotonic()
        with anyio.fail_after(poll * 10):
            while True:
                try:
                    await verifier.verify_async(session["access_token"])
                except verify.Revoked:
                    break
                await anyio.sleep(0.02)
        assert time.monotonic() - started < poll + 1.0
        # Another session of the same user is untouched.
        assert await verifier.verify_async(other["access_token"])


# The server reloads its keys every second with a JWKS max-age of 4 s.
@pytest.mark.parametrize("live_overrides", [{"jwks_max_age": "4"}])
async def test_tokens_verify_across_a_key_rotation_and_fail_once_their_key_is_revoked(
    live: Live, http: httpx.AsyncClient
) -> None:
    recorder, monotonic = Recorder(), Monotonic()
    verifier = Verifier(live.url, live.settings.audience, fetch=recorder, monotonic=monotonic)
    before = (await log_in(http))["access_token"]
    old_kid = jwt.get_unverified_header(before)["kid"]
    await verifier.verify_async(before)

    await live.services.keys.rotate("test", force=True)
    failures, kids = 0, set[str]()
    # Each turn is a password login (argon2); at a load average of 6-8 with the suite's other
    # worker, ten seconds of them once ended before the 1 s reload was seen. No failure may occur
    # however long it takes, so the bound only stops a server that never switches.
    with anyio.fail_after(30):
        while len(kids) < 2:  # until the server signs with the new key
            token = (await log_in(http))["access_token"]
            kids.add(jwt.get_unverified_header(token)["kid"])
            try:
                await verifier.verify_async(token)
            except verify.InvalidToken:
                failures += 1
            await anyio.sleep(0.1)
    assert failures == 0
    # The new key was published as "next" before it signed: no refetch was needed.
    assert recorder.jwks() == [200]

    await live.services.keys.revoke(old_kid, "test")
    await anyio.sleep(1.5)  # the server's reload interval
    monotonic.now += 5  # past the JWKS max-age
    assert await verifier.verify_async((await log_in(http))["access_token"])
    with pytest.raises(verify.UnknownKey):
        await verifier.verify_async(before)


async def _jwks(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


# joserfc warns that RFC 9864 deprecates the "EdDSA" alg name (in favour of "Ed25519"); the
# server still signs with "EdDSA", which every verifier today understands.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
async def test_tokens_verify_with_joserfc(live: Live, http: httpx.AsyncClient) -> None:
    token = (await log_in(http))["access_token"]
    key_set = joserfc.jwk.KeySet.import_key_set(await _jwks(http))  # type: ignore[arg-type]

    decoded = joserfc.jwt.decode(token, key_set, algorithms=[live.settings.signing_alg])
    joserfc.jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": live.url},
        aud={"essential": True, "value": live.settings.audience},
        exp={"essential": True},
    ).validate(decoded.claims)

    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["client_id"] == "spa"
    # And a hostile one is refused by it too (the control for the test above).
    forged = hostile_token("signed_by_another_key", live.services, token)
    with pytest.raises(joserfc.errors.BadSignatureError):
        joserfc.jwt.decode(forged, key_set, algorithms=[live.settings.signing_alg])


async def test_tokens_verify_with_jwcrypto(live: Live, http: httpx.AsyncClient) -> None:
    token = (await log_in(http))["access_token"]
    key_set = jwcrypto.jwk.JWKSet.from_json(json.dumps(await _jwks(http)))
    checks = {"iss": live.url, "aud": live.settings.audience, "exp": None}

    verified = jwcrypto.jwt.JWT(
        jwt=token, key=key_set, algs=[live.settings.signing_alg], check_claims=checks
    )

    assert json.loads(verified.claims)["client_id"] == "spa"
    forged = hostile_token("signed_by_another_key", live.services, token)
    # With a key set, jwcrypto reports a bad signature as "no working key".
    with pytest.raises(jwcrypto.jwt.JWTMissingKey):
        jwcrypto.jwt.JWT(jwt=forged, key=key_set, algs=[live.settings.signing_alg])


async def test_the_introspector_sees_a_logout_within_its_cache_seconds(
    live: Live, http: httpx.AsyncClient
) -> None:
    secret = await Registry(live.services).client("orders-api")
    assert secret is not None
    # Long enough that the second check below lands inside it on a loaded CI machine (at 0.5 s
    # it did not, once, with the load average at 10).
    cache = 2.0
    introspector = Introspector(f"{live.url}/introspect", "orders-api", secret, cache_seconds=cache)
    session, other = await log_in(http), await log_in(http)
    token = session["access_token"]

    answer = await introspector.check_async(token)
    assert answer["active"] is True
    assert (
        answer["sub"]
        == (await Verifier(live.url, live.settings.audience).verify_async(token))["sub"]
    )
    await introspector.check_async(token)
    assert introspector.requests == 1  # the second answer came from the cache

    response = await http.post("/logout", data={"refresh_token": session["refresh_token"]})
    assert response.status_code == 204
    started = time.monotonic()
    with anyio.fail_after(cache * 10):
        while True:
            try:
                await introspector.check_async(token)
            except verify.Revoked:
                break
            await anyio.sleep(0.02)
    assert time.monotonic() - started <= cache + 0.5
    assert (await introspector.check_async(other["access_token"]))["active"] is True

    # Wrong credentials or a server that is down: unavailable (503), never "active".
    wrong = Introspector(f"{live.url}/introspect", "orders-api", "wrong", cache_seconds=0)
    with pytest.raises(IntrospectionUnavailable):
        await wrong.check_async(other["access_token"])
    await live.stop()
    with pytest.raises(IntrospectionUnavailable):
        await Introspector(f"{live.url}/introspect", "orders-api", secret).check_async(token)


async def test_require_active_answers_401_for_a_session_revoked_a_moment_ago(
    live: Live, http: httpx.AsyncClient
) -> None:
    secret = await Registry(live.services).client("orders-api")
    assert secret is not None
    verifier = Verifier(live.url, live.settings.audience)  # no feed: offline checks only
    introspector = Introspector(f"{live.url}/introspect", "orders-api", secret, cache_seconds=0)

    @require_active(introspector)
    async def transfer(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/transfer", transfer, methods=["POST"])],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)],
    )
    session = await log_in(http)
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as service:
        assert (await service.post("/transfer", headers=headers)).status_code == 200
        await http.post("/logout", data={"refresh_token": session["refresh_token"]})

        response = await service.post("/transfer", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
