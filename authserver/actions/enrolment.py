"""Enrolling an authenticator app (TOTP, RFC 6238), wherever it happens: on the account page,
or in the sign-in when `AUTHSERVER_MFA=required` asks a user without a factor to add one.

Two posts. The first makes a secret and shows it; the secret travels to the second post sealed
under the KEK with a label naming the browser's state (its login session on the account page,
its pending sign-in in the sign-in) and an expiry, so the page cannot hand in a secret of its
choosing and another browser cannot use it. The second post checks one code from the app,
stores the factor (that code's step spent, so it signs nothing in again) and 10 recovery codes,
shown once.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag

from authserver.accounts.second_factors import (
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    provisioning_uri,
    recovery_code_hash,
    seal_totp,
)
from authserver.accounts.users import User
from authserver.audit import AuditEvent
from authserver.i18n.translations import N_
from authserver.services import Services

WRONG_ENROLMENT_CODE = N_("That code is wrong. Check the time on your device and try again.")
ENROLMENT_EXPIRED = N_("This setup has expired. Start again.")
ENROLMENT_TTL = 600  # to scan the code and type one from the app


@dataclass(frozen=True)
class TotpEnrolment:
    """The setup page: the secret as a QR code and as text, and the sealed `token` that carries
    it to the confirming post; `problem` after a wrong code."""

    secret: str
    uri: str  # otpauth://, what the QR code holds
    token: str
    problem: str | None = None


@dataclass(frozen=True)
class Enrolled:
    recovery_codes: tuple[str, ...]  # shown once, never stored in the clear


def new_enrolment(services: Services, user: User, label: str) -> TotpEnrolment:
    """A new secret to set up, sealed for the browser state `label` names."""
    secret = new_totp_secret()
    expires = services.clock() + ENROLMENT_TTL
    sealed = services.factor_sealer.seal(label, f"{expires}:{secret}".encode())
    token = base64.urlsafe_b64encode(sealed).decode("ascii")
    return TotpEnrolment(secret, _uri(services, user, secret), token)


async def confirm_enrolment(
    services: Services, user: User, label: str, token: str, code: str, via: str
) -> Enrolled | TotpEnrolment:
    """Stores the factor and new recovery codes if `code` is the app's for the secret `token`
    carries (sealed for `label`); the setup page again with why otherwise (a token that does
    not open: edited, another browser's, expired, is ENROLMENT_EXPIRED with a new secret)."""
    now = services.clock()
    secret = _open(services, label, token, now)
    if secret is None:
        return _with_problem(new_enrolment(services, user, label), ENROLMENT_EXPIRED)
    again = TotpEnrolment(secret, _uri(services, user, secret), token, WRONG_ENROLMENT_CODE)
    step = matching_step(secret, code, now)
    if step is None:
        return again
    factor_id = str(uuid.uuid4())
    sealed = seal_totp(services.factor_sealer, factor_id, secret)
    detail = {"kind": "totp", "via": via}
    event = AuditEvent(now, user.id, "factor.enrolled", user.id, detail, user=user.id)
    if not await services.second_factors.add_totp(factor_id, user.id, sealed, step, now, [event]):
        return _with_problem(again, ENROLMENT_EXPIRED)  # one was enrolled meanwhile
    codes = new_recovery_codes()
    hashes = [str(recovery_code_hash(c)) for c in codes]
    await services.second_factors.replace_recovery_codes(user.id, hashes, now)
    return Enrolled(tuple(codes))


def _open(services: Services, label: str, token: str, now: int) -> str | None:
    try:
        sealed = base64.urlsafe_b64decode(token.encode("ascii"))
        opened = services.factor_sealer.open(label, sealed).decode()
    except (binascii.Error, ValueError, InvalidTag):  # UnicodeError is a ValueError
        return None
    expires, _, secret = opened.partition(":")
    return secret if expires.isdigit() and int(expires) > now else None


def _uri(services: Services, user: User, secret: str) -> str:
    host = urlsplit(services.settings.issuer).hostname or "authserver"
    return provisioning_uri(secret, user.username, host)


def _with_problem(enrolment: TotpEnrolment, problem: str) -> TotpEnrolment:
    return TotpEnrolment(enrolment.secret, enrolment.uri, enrolment.token, problem)
