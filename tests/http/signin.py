"""Helpers of the browser sign-in tests: an admin token, and PKCE pairs."""

from __future__ import annotations

import base64
import hashlib
import secrets

import httpx

from tests.conftest import Registry, password_login


async def admin_headers(http: httpx.AsyncClient, registry: Registry) -> dict[str, str]:
    """Headers of an admin user's bearer token (the spa client must exist)."""
    await registry.user("root", "correct horse", admin=True)
    response = await password_login(http, "root", client_id="spa", scope="admin")
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
