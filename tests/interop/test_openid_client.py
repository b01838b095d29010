"""Interop: the npm `openid-client` package (6.x, pinned in package.json), written by nobody
here, signs a user in against a live server over real HTTP, under Node: discovery(),
buildAuthorizationUrl with PKCE S256 (randomPKCECodeVerifier, calculatePKCECodeChallenge),
the browser step (done here in Python: the authorization URL opened, the sign-in form posted),
authorizationCodeGrant with the verifier, the expected state and nonce and the RFC 9207 `iss`
check, fetchUserInfo with the ID token's subject, and a refresh. And the controls: a callback
whose `iss` is another server's, or that has none, is refused by the library (mix-up).

The `node` fixture (conftest.py) installs the pinned packages; in CI (CI set) a missing node
or npm fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import httpx
import jwt
import pyotp
import pytest

from authserver.accounts.second_factors import STEP_SECONDS, new_totp_secret, seal_totp
from tests.conftest import Registry
from tests.http.test_verify_live import Live
from tests.interop.browser import CALLBACK, INSECURE_COOKIES, browser_sign_in, new_browser

HERE = Path(__file__).parent
RP = "rp"
BYE = "https://rp.example/bye"


@pytest.fixture
def live_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


async def openid_client(node: str, step: str, **fields: Any) -> subprocess.CompletedProcess[str]:
    argv = [node, str(HERE / "openid_client.mjs"), step, json.dumps(fields)]
    with anyio.fail_after(60):
        return await anyio.run_process(argv, cwd=HERE, check=False)  # type: ignore[return-value]


def _succeeded(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, _text(result.stderr)
    answer: dict[str, Any] = json.loads(_text(result.stdout))
    return answer


def _with_iss(callback: str, iss: str | None) -> str:
    """The callback URL with its `iss` replaced (or removed, for None)."""
    parts = urlsplit(callback)
    fields = [(k, v) for k, v in parse_qsl(parts.query) if k != "iss"]
    if iss is not None:
        fields.append(("iss", iss))
    return urlunsplit(parts._replace(query=urlencode(fields)))


async def _started(
    node: str, live: Live, auth: str, **extra: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Registers the client, runs the library's `start` step: (its input, its answer)."""
    client = await register_rp(live, auth)
    return client, _succeeded(await openid_client(node, "start", **client, **extra))


async def register_rp(live: Live, auth: str) -> dict[str, str]:
    """alice with a verified address, and the RP registered to authenticate with `auth`
    ("none": a public client): the client's fields as the Node scripts take them."""
    registry = Registry(live.services)
    await registry.profile("alice", email="alice@example.org", email_verified=True)
    secret = await registry.client(
        RP,
        public=auth == "none",
        grant_types=("authorization_code", "refresh_token"),
        scopes=("openid", "profile", "email"),
        redirect_uris=(CALLBACK,),
        post_logout_redirect_uris=(BYE,),
    )
    client = {
        "issuer": live.url,
        "client_id": RP,
        "redirect_uri": CALLBACK,
        "post_logout_redirect_uri": BYE,
        "auth": auth,
    }
    if secret is not None:
        client["client_secret"] = secret
    return client


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post", "none"])
async def test_openid_client_signs_a_user_in_with_pkce_and_iss_checks(
    node: str, live: Live, http: httpx.AsyncClient, auth: str
) -> None:
    client, started = await _started(node, live, auth)
    sent = dict(parse_qsl(urlsplit(started["url"]).query))
    assert started["url"].startswith(f"{live.url}/authorize?")
    assert sent["code_challenge_method"] == "S256" and "code_verifier" not in sent

    async with new_browser() as browser:
        callback = await browser_sign_in(started["url"], browser=browser)
        done = _succeeded(
            await openid_client(node, "finish", **client, **started, callback=callback)
        )
        signed_out = await browser.get(done["logout"])
    metadata = (await http.get("/.well-known/openid-configuration")).json()
    assert done["server"] == metadata["issuer"] == live.url
    assert metadata["authorization_response_iss_parameter_supported"] is True
    claims = done["claims"]
    assert claims["iss"] == metadata["issuer"] and claims["aud"] == RP
    assert claims["nonce"] == started["nonce"]
    assert claims["email"] == "alice@example.org" and claims["email_verified"] is True
    assert done["userinfo"] == {
        "sub": claims["sub"],
        "preferred_username": "alice",
        "email": "alice@example.org",
        "email_verified": True,
    }
    assert done["email_verified"] is True  # as the library's typed claims read it
    assert done["refreshed"] is True
    # The library's RP-Initiated Logout URL ends the sign-in it started.
    assert signed_out.status_code == 303, signed_out.text
    assert signed_out.headers["location"] == f"{BYE}?state=bye"
    fields = {"grant_type": "refresh_token", "refresh_token": done["refresh_token"]}
    fields.update({"client_id": RP, "client_secret": client.get("client_secret", "")})
    ended = await http.post("/token", data={k: v for k, v in fields.items() if v})
    assert ended.status_code == 400 and ended.json()["error"] == "invalid_grant", ended.text


@pytest.mark.parametrize("iss", ["http://127.0.0.2:1", None], ids=["another_server", "none"])
async def test_openid_client_refuses_a_callback_without_our_iss(
    node: str, live: Live, iss: str | None
) -> None:
    """Mix-up (RFC 9207 §2.4): the library compares the callback's `iss` with the discovered
    issuer, and, the server having said it sends one, refuses a callback without it."""
    client, started = await _started(node, live, "none")
    callback = await browser_sign_in(started["url"])

    result = await openid_client(
        node, "finish", **client, **started, callback=_with_iss(callback, iss)
    )

    assert result.returncode == 1, _text(result.stdout)
    assert _text(result.stderr).startswith("refused: "), _text(result.stderr)
    assert '"iss" (issuer)' in _text(result.stderr), _text(result.stderr)
    # The code was not spent: the genuine callback still completes the sign-in.
    _succeeded(await openid_client(node, "finish", **client, **started, callback=callback))


async def test_openid_client_reads_an_error_answer_with_our_iss(
    node: str, live: Live, http: httpx.AsyncClient
) -> None:
    """prompt=none without a login session: the error redirect carries `iss` too (RFC 9207
    §2), so the library gets past its mix-up check to the error itself."""
    client, started = await _started(node, live, "none", prompt="none")
    answer = await http.get(started["url"])  # a browser with no login session
    assert answer.status_code == 302, answer.text

    result = await openid_client(
        node, "finish", **client, **started, callback=answer.headers["location"]
    )

    assert result.returncode == 1, _text(result.stdout)
    refused = _text(result.stderr)
    assert (
        refused.startswith("refused: AuthorizationResponseError")
        and "[error=login_required]" in refused
    ), refused


async def test_openid_client_asks_for_mfa_and_reads_acr_and_amr(
    node: str, live: Live, http: httpx.AsyncClient
) -> None:
    """The library sends `acr_values=mfa` for a user with an authenticator app; the browser
    gives the password and the code; the library reads `acr`/`amr` from the ID token it
    verified, and the access token says the same after a refresh."""
    client, started = await _started(node, live, "none", acr_values="mfa")
    assert dict(parse_qsl(urlsplit(started["url"]).query))["acr_values"] == "mfa"
    user = await live.services.users.by_username("alice")
    assert user is not None
    secret, factor_id = new_totp_secret(), str(uuid.uuid4())
    sealed = seal_totp(live.services.factor_sealer, factor_id, secret)
    enrolled_step = int(time.time()) // STEP_SECONDS - 10
    assert await live.services.second_factors.add_totp(factor_id, user.id, sealed, enrolled_step, 0)

    callback = await browser_sign_in(started["url"], code=pyotp.TOTP(secret).now)
    done = _succeeded(await openid_client(node, "finish", **client, **started, callback=callback))

    # RFC 8176 §2: "otp" a one-time password, "mfa" more than one factor.
    assert done["claims"]["acr"] == "mfa" and "otp" in done["claims"]["amr"]
    assert done["refreshed"] is True
    keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
    for token in (done["access_token"], done["refreshed_access_token"]):
        [jwk] = [k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(
            token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], options={"verify_aud": False}
        )
        assert claims["acr"] == "mfa" and "otp" in claims["amr"], claims
        assert claims["auth_time"] == done["claims"]["auth_time"]
