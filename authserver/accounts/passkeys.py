"""Passkeys (WebAuthn Level 2) with py_webauthn: the options a page hands the browser, and the
checks of what the browser answers.

The relying party is the issuer: its host is the RP ID, its origin the only origin accepted
(§7.1 step 9, §7.2 step 13). Every ceremony asks for user verification (so a passkey is two
factors: something held, and a PIN or biometric behind it) and prefers a discoverable
credential, which "Sign in with a passkey" finds without a username.

A challenge is 32 random bytes handed out once and kept server-side by its SHA-256 only
(`challenge_hash`), with what it is for and the browser it went to; the answer carries the
challenge back in its signed clientDataJSON, and the store spends it in one statement, so of two
uses of one challenge at most one gets through. The signature counter is compared and raised in
one statement too (PasskeyStore.use): an authenticator whose counter goes back is a clone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authserver.audit import AuditEvent

PASSKEY = "passkey"  # the kind of factor, as the account page and the admin view name it
REGISTER, SIGN_IN = "register", "sign_in"  # what a challenge is for
CHALLENGE_TTL = 300  # 5 minutes, and the browser's timeout
NAME_MAX = 64
_LONGEST_ANSWER = 64 * 1024  # a credential's JSON beyond this is none of ours


@dataclass(frozen=True)
class RelyingParty:
    id: str  # the issuer's host
    origin: str  # the issuer's scheme://host[:port]
    name: str


def relying_party(issuer: str) -> RelyingParty:
    parts = urlsplit(issuer)
    host = parts.hostname or "localhost"
    return RelyingParty(host, f"{parts.scheme}://{parts.netloc}", host)


@dataclass(frozen=True)
class StoredPasskey:
    id: str
    user_id: str
    credential_id: str  # base64url, as the browser's `id`
    public_key: bytes  # COSE_Key
    sign_count: int
    transports: tuple[str, ...]
    name: str
    created_at: int
    last_used_at: int | None = None


@dataclass(frozen=True)
class Challenge:
    purpose: str  # REGISTER or SIGN_IN
    user_id: str | None  # whose registration or second factor; None: passwordless
    browser: str  # browser_hash() of the CSRF token the options went to
    expires_at: int


class PasskeyRefused(Exception):
    """The browser's answer is not a valid ceremony for us; `reason` is for the audit trail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PasskeyStore(Protocol):
    """Every method is one transaction of its own."""

    async def add(self, passkey: StoredPasskey, audit: Sequence[AuditEvent] = ()) -> bool:
        """False when the credential is registered already (to anyone)."""
        ...

    async def of_user(self, user_id: str) -> list[StoredPasskey]:
        """Oldest first."""
        ...

    async def by_credential(self, credential_id: str) -> StoredPasskey | None: ...

    async def use(self, passkey_id: str, sign_count: int, now: int) -> bool:
        """Records the counter and the use if the counter went up (or both it and the stored
        one are 0: an authenticator without one); False otherwise, at most once per count."""
        ...

    async def remove(
        self, passkey_id: str, user_id: str, audit: Sequence[AuditEvent] = ()
    ) -> bool | None:
        """Removes the user's passkey; False for an unknown one or another user's; None
        (nothing removed) when it is the user's last second factor, decided with the user's
        other removals taking turns."""
        ...

    async def hold_challenge(self, challenge_hash: str, challenge: Challenge, now: int) -> None: ...

    async def spend_challenge(
        self, challenge_hash: str, purpose: str, browser: str, now: int
    ) -> Challenge | None:
        """Removes and returns the unexpired challenge if it is for `purpose` and `browser`:
        at most once."""
        ...


def new_challenge() -> bytes:
    return secrets.token_bytes(32)


def challenge_hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def browser_hash(csrf_token: str) -> str:
    return hashlib.sha256(csrf_token.encode()).hexdigest()


def creation_options(
    rp: RelyingParty,
    user_id: str,
    username: str,
    existing: Sequence[StoredPasskey],
    challenge: bytes,
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON: the user handle is the user's id (a random UUID,
    nothing personal, §14.6.1), the user's passkeys excluded so one is not registered twice."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=username,
        user_id=user_id.encode(),
        challenge=challenge,
        timeout=CHALLENGE_TTL * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(p) for p in existing],
    )
    return dict(json.loads(options_to_json(options)))


def request_options(
    rp: RelyingParty, allowed: Sequence[StoredPasskey], challenge: bytes
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON: `allowed` empty asks for a discoverable
    credential (passwordless), else one of the user's (a second factor)."""
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=CHALLENGE_TTL * 1000,
        allow_credentials=[_descriptor(p) for p in allowed],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return dict(json.loads(options_to_json(options)))


def challenge_of(answer: object) -> bytes | None:
    """The challenge the browser's answer (a PublicKeyCredential's toJSON()) carries in its
    clientDataJSON, or None when it carries none readable. Only a lookup key: the library
    checks it again against the one the store spent."""
    if not isinstance(answer, dict) or len(json.dumps(answer)) > _LONGEST_ANSWER:
        return None
    try:
        client_data = json.loads(_unb64(answer["response"]["clientDataJSON"]))
        return _unb64(client_data["challenge"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None


def credential_id_of(answer: object) -> str | None:
    if isinstance(answer, dict) and isinstance(answer.get("id"), str) and answer["id"]:
        identifier: str = answer["id"]
        return identifier if len(identifier) <= 1400 else None
    return None


@dataclass(frozen=True)
class NewCredential:
    credential_id: str
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]


def verify_new(rp: RelyingParty, answer: dict[str, Any], challenge: bytes) -> NewCredential:
    """§7.1 Registering a New Credential, by py_webauthn: the challenge, the origin, the RP ID
    hash, user presence and verification, the algorithm; "none" attestation (we trust no
    vendor's certificate, so a statement would add nothing). Raises PasskeyRefused."""
    try:
        verified = verify_registration_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise PasskeyRefused(str(exc)[:200]) from exc
    known = {t.value for t in AuthenticatorTransport}
    reported = _response_member(answer, "transports")
    reported = reported if isinstance(reported, list) else []
    transports = tuple(t for t in reported if isinstance(t, str) and t in known)
    return NewCredential(
        _b64(verified.credential_id),
        verified.credential_public_key,
        verified.sign_count,
        transports,
    )


def verify_assertion(
    rp: RelyingParty, answer: dict[str, Any], challenge: bytes, stored: StoredPasskey
) -> int:
    """§7.2 Verifying an Authentication Assertion, by py_webauthn; the new signature count.
    The counter itself is left to the store (PasskeyStore.use), which compares and raises it
    in one statement: the library's check would read the count before another instance's
    use of the same answer had written it. Raises PasskeyRefused."""
    # §7.2 step 6: "verify that the user account identified by ... response.userHandle"
    # owns the credential — our user handle is the user's id.
    handle = _response_member(answer, "userHandle")
    if handle and _unb64_or_none(handle) != stored.user_id.encode():
        raise PasskeyRefused("user handle is not the credential's user")
    try:
        verified = verify_authentication_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=stored.public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise PasskeyRefused(str(exc)[:200]) from exc
    return verified.new_sign_count


def clean_name(name: str, fallback: str) -> str:
    """The name a user gives a passkey: printable, trimmed, cut to NAME_MAX; `fallback` if
    empty."""
    printable = "".join(c for c in name if c.isprintable()).strip()
    return printable[:NAME_MAX] or fallback


def _response_member(answer: dict[str, Any], name: str) -> object:
    """A member of the answer's `response`, or None (whatever shape the browser sent)."""
    response = answer.get("response")
    return response.get(name) if isinstance(response, dict) else None


def _descriptor(passkey: StoredPasskey) -> PublicKeyCredentialDescriptor:
    known = {t.value: t for t in AuthenticatorTransport}
    return PublicKeyCredentialDescriptor(
        id=_unb64(passkey.credential_id),
        transports=[known[t] for t in passkey.transports if t in known] or None,
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not base64url text")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _unb64_or_none(value: object) -> bytes | None:
    try:
        return _unb64(value)
    except (TypeError, ValueError, binascii.Error):
        return None
