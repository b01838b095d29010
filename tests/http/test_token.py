"""POST /token through real HTTP: the three grants, client authentication, and bad input."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.users import new_user
from authserver.services import Services
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error, password_login

AUDIENCE = "authserver-api"
PASSWORD = "correct horse"


def password_form(client_id: str = "spa", **extra: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "client_id": client_id,
        **extra,
    }


async def verified_claims(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """The token's claims, checked as an outside verifier would: with the published JWKS."""
    header = jwt.get_unverified_header(token)
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    [jwk] = [key for key in keys if key["kid"] == header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    return claims


async def stored_password_hash(engine: AsyncEngine, username: str) -> str:
    async with engine.connect() as conn:
        found: str = (
            await conn.execute(
                text("SELECT password_hash FROM users WHERE username = :u"), {"u": username}
            )
        ).scalar_one()
    return found


@pytest.fixture
async def alice(registry: Registry) -> str:
    return await registry.user("alice", PASSWORD)


@pytest.fixture
async def service(registry: Registry) -> tuple[str, str]:
    """A confidential client allowed client_credentials; returns (client_id, secret)."""
    secret = await registry.client("svc", scopes=("read", "write", "admin"))
    assert secret is not None
    return "svc", secret


# --- password grant -------------------------------------------------------------------------


async def test_password_grant_issues_a_verifiable_access_token_and_a_refresh_token(
    client: httpx.AsyncClient, spa: str, alice: str, clock: Clock
) -> None:
    response = await password_login(client)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "profile"
    # Opaque, not a JWT: `<family id>.<secret>` (0030), url-safe characters only.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43,}", body["refresh_token"])

    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] in ("RS256", "EdDSA")
    assert header["kid"]
    assert not {"jku", "jwk", "x5u"} & set(header)

    claims = await verified_claims(client, body["access_token"])
    assert claims["iss"] == ISSUER
    assert claims["sub"] == alice
    assert claims["aud"] == AUDIENCE
    assert claims["iat"] == clock.now
    assert claims["exp"] == claims["iat"] + 900
    assert claims["client_id"] == spa
    assert claims["scope"] == "profile"
    assert isinstance(claims["sid"], str) and claims["sid"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 22  # >= 128 bits
    assert "nbf" not in claims


async def test_each_login_gets_its_own_session_and_jti(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    first = (await password_login(client)).json()
    second = (await password_login(client)).json()
    one = jwt.decode(first["access_token"], options={"verify_signature": False})
    two = jwt.decode(second["access_token"], options={"verify_signature": False})
    assert one["jti"] != two["jti"]
    assert one["sid"] != two["sid"]
    assert first["refresh_token"] != second["refresh_token"]


async def test_wrong_password_and_unknown_user_answer_byte_for_byte_the_same(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    wrong = await password_login(client, password="wrong horse")
    unknown = await password_login(client, username="mallory")

    assert_oauth_error(wrong, 400, "invalid_grant")
    assert unknown.status_code == wrong.status_code
    assert unknown.content == wrong.content
    # Every header alike but the request id, which is each request's own (authserver.logs).
    assert {**unknown.headers, "x-request-id": ""} == {**wrong.headers, "x-request-id": ""}


async def test_disabled_user_cannot_log_in_and_cannot_be_told_apart(
    client: httpx.AsyncClient, spa: str, services: Services, engine: AsyncEngine
) -> None:
    bob = new_user("bob", await services.passwords.hash(PASSWORD), ["profile"], False)
    assert await services.users.create(bob, services.clock())
    ok = await password_login(client, username="bob")
    assert ok.status_code == 200, ok.text

    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET disabled = :yes WHERE id = :id"), {"yes": True, "id": bob.id}
        )

    refused = await password_login(client, username="bob")
    unknown = await password_login(client, username="nobody")
    assert_oauth_error(refused, 400, "invalid_grant")
    assert refused.content == unknown.content


async def test_password_grant_refused_for_a_client_not_registered_with_it(
    client: httpx.AsyncClient, registry: Registry, alice: str
) -> None:
    await registry.client("cli", public=True, grant_types=("refresh_token",))
    response = await password_login(client, client_id="cli")
    assert_oauth_error(response, 400, "unauthorized_client")


async def test_password_grant_with_an_unknown_client_is_invalid_client(
    client: httpx.AsyncClient, alice: str
) -> None:
    response = await password_login(client, client_id="nobody")
    assert_oauth_error(response, 401, "invalid_client")
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize("missing", ["username", "password"])
async def test_password_grant_needs_username_and_password(
    client: httpx.AsyncClient, spa: str, alice: str, missing: str
) -> None:
    form = password_form()
    del form[missing]
    assert_oauth_error(await client.post("/token", data=form), 400, "invalid_request")


# --- scope ----------------------------------------------------------------------------------


async def test_asking_beyond_the_client_scopes_is_invalid_scope(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    response = await password_login(client, scope="profile email")
    assert_oauth_error(response, 400, "invalid_scope")


async def test_scopes_the_user_lacks_are_dropped(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    # spa may ask for admin, but alice is no admin: she gets what she holds.
    response = await password_login(client, scope="profile admin")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "profile"
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "profile"


async def test_admin_is_granted_only_when_asked_for(
    client: httpx.AsyncClient, spa: str, registry: Registry
) -> None:
    await registry.user("root", PASSWORD, scopes=("profile",), admin=True)

    default = await password_login(client, username="root")
    assert default.status_code == 200, default.text
    assert default.json()["scope"] == "profile"

    asked = await password_login(client, username="root", scope="admin")
    assert asked.status_code == 200, asked.text
    assert asked.json()["scope"] == "admin"
    claims = await verified_claims(client, asked.json()["access_token"])
    assert claims["scope"] == "admin"


@pytest.mark.parametrize(
    "scope", ["profile  admin", " profile", "profile ", 'pro"file', "pro\\file", "pröfile"]
)
async def test_malformed_scope_is_invalid_scope(
    client: httpx.AsyncClient, spa: str, alice: str, scope: str
) -> None:
    response = await password_login(client, scope=scope)
    assert_oauth_error(response, 400, "invalid_scope")


# --- client_credentials ---------------------------------------------------------------------


async def test_client_credentials_with_http_basic(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    client_id, secret = service
    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert "refresh_token" not in body
    assert body["token_type"] == "Bearer"
    # admin is never a default, even for a client allowed it
    assert body["scope"] == "read write"
    claims = await verified_claims(client, body["access_token"])
    assert claims["sub"] == client_id
    assert claims["client_id"] == client_id
    assert claims["scope"] == "read write"
    assert "sid" not in claims


async def test_client_credentials_with_the_secret_in_the_body(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    client_id, secret = service
    response = await client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "read admin",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert body["scope"] == "read admin"
    claims = await verified_claims(client, body["access_token"])
    assert claims["sub"] == client_id
    assert "sid" not in claims


async def test_client_credentials_beyond_the_client_scopes_is_invalid_scope(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    response = await client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "delete"}, auth=service
    )
    assert_oauth_error(response, 400, "invalid_scope")


@pytest.mark.parametrize("who", ["wrong secret", "unknown client", "empty secret"])
async def test_bad_basic_credentials_are_401_with_a_basic_challenge(
    client: httpx.AsyncClient, service: tuple[str, str], who: str
) -> None:
    client_id, secret = service
    auth = {
        "wrong secret": (client_id, secret + "x"),
        "unknown client": ("nobody", secret),
        "empty secret": (client_id, ""),
    }[who]
    response = await client.post("/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize("who", ["wrong secret", "unknown client", "no secret"])
async def test_bad_body_credentials_are_401_without_a_challenge(
    client: httpx.AsyncClient, service: tuple[str, str], who: str
) -> None:
    client_id, secret = service
    fields = {
        "wrong secret": {"client_id": client_id, "client_secret": "nope"},
        "unknown client": {"client_id": "nobody", "client_secret": secret},
        "no secret": {"client_id": client_id},
    }[who]
    response = await client.post("/token", data={"grant_type": "client_credentials", **fields})
    assert_oauth_error(response, 401, "invalid_client")
    assert "www-authenticate" not in response.headers


async def test_wrong_secret_and_unknown_client_answer_the_same(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    client_id, secret = service
    wrong = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client_id, "nope")
    )
    unknown = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("nobody", "nope")
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content


async def test_public_client_cannot_use_client_credentials(
    client: httpx.AsyncClient, spa: str
) -> None:
    response = await client.post(
        "/token", data={"grant_type": "client_credentials", "client_id": spa}
    )
    assert_oauth_error(response, 400, "unauthorized_client")


async def test_confidential_client_not_registered_for_client_credentials_is_refused(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    secret = await registry.client("web", grant_types=("password", "refresh_token"))
    assert secret is not None
    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("web", secret)
    )
    assert_oauth_error(response, 400, "unauthorized_client")


async def test_basic_and_client_secret_together_are_invalid_request(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    client_id, secret = service
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_secret": secret},
        auth=(client_id, secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_basic_client_id_differing_from_the_body_is_refused(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    client_id, secret = service
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": "someone-else"},
        auth=(client_id, secret),
    )
    assert response.status_code in (400, 401), response.text
    assert "access_token" not in response.json()


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic ",
        basic(b"nocolon"),
        basic(b"svc%00:x"),  # NUL, percent-encoded as RFC 6749 2.3.1 has it
        basic(b"svc\x00:x"),
        basic(b"svc:\xff\xfe"),  # not UTF-8
    ],
)
async def test_malformed_basic_header_is_invalid_client(
    client: httpx.AsyncClient, service: tuple[str, str], header: str
) -> None:
    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    assert_oauth_error(response, 401, "invalid_client")


# --- JSON bodies ----------------------------------------------------------------------------


async def test_json_body_password_grant(client: httpx.AsyncClient, spa: str, alice: str) -> None:
    response = await client.post("/token", json=password_form())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["refresh_token"]
    assert (await verified_claims(client, body["access_token"]))["sub"] == alice


async def test_json_body_client_credentials(
    client: httpx.AsyncClient, service: tuple[str, str]
) -> None:
    client_id, secret = service
    response = await client.post(
        "/token",
        json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()


async def test_media_type_parameters_are_accepted(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    form = await client.post(
        "/token",
        content=str(httpx.QueryParams(password_form())),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert form.status_code == 200, form.text
    body = await client.post(
        "/token",
        content=json.dumps(password_form()),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert body.status_code == 200, body.text


# --- bad input: a 4xx JSON error, never a 500 -------------------------------------------------


def form_bytes(**fields: str) -> bytes:
    return str(httpx.QueryParams(fields)).encode()


BAD_BODIES: list[tuple[str, str | None, bytes, int, str]] = [
    ("text/plain", "text/plain", b"grant_type=password", 415, "invalid_request"),
    ("no content type", None, b"grant_type=password", 415, "invalid_request"),
    ("multipart", "multipart/form-data; boundary=x", b"--x--", 415, "invalid_request"),
    (
        "duplicated form field",
        "application/x-www-form-urlencoded",
        b"grant_type=password&username=alice&username=bob&password=x&client_id=spa",
        400,
        "invalid_request",
    ),
    (
        "duplicated grant_type",
        "application/x-www-form-urlencoded",
        b"grant_type=password&grant_type=client_credentials",
        400,
        "invalid_request",
    ),
    (
        "duplicated JSON member",
        "application/json",
        b'{"grant_type": "password", "username": "alice", "username": "bob",'
        b' "password": "x", "client_id": "spa"}',
        400,
        "invalid_request",
    ),
    (
        "form with a raw NUL, nothing escaped",
        "application/x-www-form-urlencoded",
        b"grant_type=password&username=a\x00b&password=x&client_id=spa",
        400,
        "invalid_request",
    ),
    (
        "form of 33 fields",
        "application/x-www-form-urlencoded",
        b"grant_type=password" + b"".join(b"&f%d=x" % n for n in range(32)),
        400,
        "invalid_request",
    ),
    (
        "form with a byte past ASCII, nothing escaped",
        "application/x-www-form-urlencoded",
        b"grant_type=password&username=\xc3\xa9&password=x&client_id=spa",
        400,
        "invalid_request",
    ),
    ("JSON array", "application/json", b'[["grant_type", "password"]]', 400, "invalid_request"),
    ("JSON string", "application/json", b'"grant_type=password"', 400, "invalid_request"),
    ("JSON null", "application/json", b"null", 400, "invalid_request"),
    (
        "JSON number value",
        "application/json",
        b'{"grant_type": "password", "username": 1, "password": "x", "client_id": "spa"}',
        400,
        "invalid_request",
    ),
    (
        "JSON list value",
        "application/json",
        b'{"grant_type": ["password"], "client_id": "spa"}',
        400,
        "invalid_request",
    ),
    (
        "JSON object value",
        "application/json",
        b'{"grant_type": "password", "username": {"$ne": ""}, "client_id": "spa"}',
        400,
        "invalid_request",
    ),
    ("JSON null value", "application/json", b'{"grant_type": null}', 400, "invalid_request"),
    ("malformed JSON", "application/json", b'{"grant_type": "password",', 400, "invalid_request"),
    ("empty JSON", "application/json", b"", 400, "invalid_request"),
    ("deep JSON", "application/json", b"[" * 5000 + b"]" * 5000, 400, "invalid_request"),
    (
        "JSON not UTF-8",
        "application/json",
        b'{"grant_type": "password", "username": "\xff\xfe"}',
        400,
        "invalid_request",
    ),
    (
        "percent-encoded non-UTF-8",
        "application/x-www-form-urlencoded",
        b"grant_type=password&username=%ff%fe&password=x&client_id=spa",
        400,
        "invalid_request",
    ),
    (
        "raw non-ASCII form",
        "application/x-www-form-urlencoded",
        b"grant_type=password&username=\xc3\xa9\xff&password=x&client_id=spa",
        400,
        "invalid_request",
    ),
    (
        "missing grant_type",
        "application/x-www-form-urlencoded",
        b"client_id=spa",
        400,
        "invalid_request",
    ),
    ("empty form", "application/x-www-form-urlencoded", b"", 400, "invalid_request"),
    (
        "empty grant_type",
        "application/x-www-form-urlencoded",
        b"grant_type=",
        400,
        "invalid_request",
    ),
    (
        "field too long",
        "application/x-www-form-urlencoded",
        form_bytes(grant_type="password", username="alice", password="x" * 9000, client_id="spa"),
        400,
        "invalid_request",
    ),
    (
        "unsupported grant type",
        "application/x-www-form-urlencoded",
        b"grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x&client_id=spa",
        400,
        "unsupported_grant_type",
    ),
    (
        "implicit grant type",
        "application/x-www-form-urlencoded",
        b"grant_type=implicit&client_id=spa",
        400,
        "unsupported_grant_type",
    ),
    (
        "JSON unsupported grant type",
        "application/json",
        b'{"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}',
        400,
        "unsupported_grant_type",
    ),
]


@pytest.mark.parametrize(
    ("content_type", "content", "status", "code"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_bad_input_is_a_json_error(
    client: httpx.AsyncClient,
    spa: str,
    alice: str,
    content_type: str | None,
    content: bytes,
    status: int,
    code: str,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/token", content=content, headers=headers)
    assert_oauth_error(response, status, code)


# Values the parsers accept but the stores must still survive: NUL bytes (Postgres text cannot
# hold them), lone surrogates (not encodable as UTF-8), percent signs that encode nothing.
ODD_VALUES = ["a\x00b", "\ud800", "%zz", "x" * 300, "\u202e\u0000", "alice\n"]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
@pytest.mark.parametrize("field", ["username", "password", "client_id", "scope"])
async def test_odd_field_values_never_cause_a_500(
    client: httpx.AsyncClient, spa: str, alice: str, field: str, value: str
) -> None:
    body = {**password_form(), field: value}
    # json.dumps escapes to ASCII, so even a lone surrogate reaches the server (as \\ud800).
    response = await client.post(
        "/token", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] in (
        "invalid_request",
        "invalid_grant",
        "invalid_client",
        "invalid_scope",
    )


async def test_odd_values_in_a_form_never_cause_a_500(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    for content in (
        b"grant_type=password&username=a%00b&password=x&client_id=spa",
        b"grant_type=password&username=alice&password=x&client_id=sp%00a",
        b"grant_type=client_credentials&client_id=%00&client_secret=x",
        b"grant_type=%zz",
        b"=&=&grant_type=password",
        b"%",
    ):
        response = await client.post(
            "/token",
            content=content,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert 400 <= response.status_code < 500, (content, response.text)
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"]


async def test_body_over_16_kib_is_413(client: httpx.AsyncClient, spa: str) -> None:
    content = form_bytes(grant_type="password", username="alice", padding="x" * (16 * 1024))
    response = await client.post(
        "/token",
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(response, 413, "invalid_request")


async def test_streamed_body_over_16_kib_without_content_length_is_413(
    client: httpx.AsyncClient, spa: str
) -> None:
    async def chunks() -> Any:
        yield b"grant_type=password&padding="
        for _ in range(40):
            yield b"x" * 1024

    response = await client.post(
        "/token",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "content-length" not in response.request.headers
    assert_oauth_error(response, 413, "invalid_request")


async def test_body_just_under_the_limit_is_read(
    client: httpx.AsyncClient, spa: str, alice: str
) -> None:
    # 16 KiB of body in two fields each under the field limit: parsed, and answered normally.
    content = form_bytes(**password_form(), a="x" * 8000, b="y" * 8000)
    assert len(content) <= 16 * 1024
    response = await client.post(
        "/token",
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text


async def test_get_on_token_is_a_json_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/token")
    assert response.status_code == 405
    assert response.json()["error"]


# --- password hash upgrade ------------------------------------------------------------------


async def test_old_argon2_parameters_are_upgraded_on_the_next_login(
    client: httpx.AsyncClient, spa: str, services: Services, engine: AsyncEngine
) -> None:
    # The suite's settings hash with m=1024,t=1,p=1; this hash predates them.
    old = PasswordHasher(time_cost=2, memory_cost=512, parallelism=1, type=Type.ID).hash(PASSWORD)
    assert "m=512,t=2,p=1" in old
    user = new_user("carol", old, ["profile"], False)
    assert await services.users.create(user, services.clock())

    wrong = await password_login(client, username="carol", password="nope")
    assert_oauth_error(wrong, 400, "invalid_grant")
    assert await stored_password_hash(engine, "carol") == old  # no upgrade without the password

    ok = await password_login(client, username="carol")
    assert ok.status_code == 200, ok.text
    upgraded = await stored_password_hash(engine, "carol")
    assert upgraded != old
    assert upgraded.startswith("$argon2id$v=19$m=1024,t=1,p=1$")

    again = await password_login(client, username="carol")
    assert again.status_code == 200, again.text
    assert await stored_password_hash(engine, "carol") == upgraded  # current: left alone


async def test_a_token_request_looks_its_client_up_once(
    client: httpx.AsyncClient,
    registry: Registry,
    services: Services,
    spa: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Origin rule of cookie-delivery clients and the grant's client authentication share
    one lookup (actions/token.issue)."""
    await registry.user("alice", PASSWORD)
    looked_up: list[str] = []
    get = services.clients.get

    async def counting_get(client_id: str) -> Any:
        looked_up.append(client_id)
        return await get(client_id)

    monkeypatch.setattr(services.clients, "get", counting_get)
    response = await password_login(client, password=PASSWORD, client_id=spa)
    assert response.status_code == 200, response.text
    assert looked_up == [spa]
