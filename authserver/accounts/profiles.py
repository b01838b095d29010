"""A user's profile (API.md "Accounts: who signs in"): what each field may hold, and which
claims each identity scope gives (OpenID Connect Core §5.1, §5.4)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields, replace
from typing import Any

from authserver.errors import InvalidRequest
from authserver.inputs import storable
from authserver.tokens.scopes import EMAIL, PROFILE

MAX_NAME = 256
MAX_EMAIL = 254  # RFC 5321 §4.5.3.1.3: a path is at most 256 octets, its brackets included
MAX_EMAIL_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_LOCALE = 35  # RFC 5646 §4.4.1: 35 characters hold every tag a registry may ever hold
MAX_ROLES = 64
_ROLE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# BCP 47 (RFC 5646) as OpenID Connect Core §5.1 asks for `locale`: a language subtag, then
# subtags of letters and digits, joined by hyphens (`en-GB`, not `en_GB`).
_LOCALE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
# A domain: labels of letters (any script: IDNs are stored as typed), digits and hyphens.
_LABEL = re.compile(r"[^\W_](?:[\w-]{0,61}[^\W_])?")
# What a displayed name may not hold: controls, line and paragraph separators, surrogates, and
# the bidi overrides and isolates that make a name read as another. Zero-width joiners stay:
# names in Persian or Indic scripts need them.
_REFUSED_IN_NAMES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Which identity scope gives which claims (Core §5.4), in the order they are answered.
PROFILE_CLAIMS = ("preferred_username", "name", "given_name", "family_name", "locale")
EMAIL_CLAIMS = ("email", "email_verified")


@dataclass(frozen=True)
class Profile:
    email: str | None = None  # as given, for display and mail; `email_key` is what is unique
    email_verified: bool = False
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    locale: str | None = None
    roles: tuple[str, ...] = ()


FIELDS = tuple(field.name for field in fields(Profile))
# What says who the user is: forgotten with the user (the audit trail keeps the sub alone).
PERSONAL = ("email", "name", "given_name", "family_name", "locale")
_TEXT_FIELDS = ("name", "given_name", "family_name")


@dataclass(frozen=True)
class ProfileChanges:
    """A PATCH of the profile: the fields in `given` take their value from `values`; a null
    clears a field, the others stay as they are."""

    values: Profile = Profile()
    given: frozenset[str] = frozenset()

    def applied_to(self, current: Profile) -> Profile:
        """`current` with the changes. A new address is not verified unless the same change
        says it is; the same address in another case is no new address."""
        changed = replace(current, **{name: getattr(self.values, name) for name in self.given})
        if (
            "email" in self.given
            and "email_verified" not in self.given
            and email_key(changed.email) != email_key(current.email)
        ):
            changed = replace(changed, email_verified=False)
        if changed.email is None:
            changed = replace(changed, email_verified=False)  # nothing to be verified
        return changed


def email_key(email: str | None) -> str | None:
    """What makes two addresses one: NFKC, case folded, NFKC again, as usernames. API.md
    compares addresses case-insensitively, the local part too (RFC 5321 lets a mail server
    tell them apart; no one relies on it for two people)."""
    if email is None:
        return None
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold())


def profile_from(body: dict[str, Any]) -> ProfileChanges:
    """The profile fields present in a JSON body, checked; InvalidRequest names the first
    bad one. Other members of `body` are the caller's."""
    given = frozenset(name for name in FIELDS if name in body)
    values: dict[str, Any] = {}
    for name in given:
        values[name] = _checked(name, body[name])
    return ProfileChanges(Profile(**values), given)


def _checked(name: str, value: Any) -> Any:
    if name == "email_verified":
        if not isinstance(value, bool):
            raise InvalidRequest("email_verified must be true or false.")
        return value
    if name == "roles":
        return roles_from(value)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string, or null.")
    if not storable(value):
        raise InvalidRequest(f"{name} contains a character not allowed.")
    if name == "email":
        problem = email_problem(value)
    elif name == "locale":
        problem = None if _locale_ok(value) else "locale must be a BCP 47 tag such as en-GB."
    else:
        problem = name_problem(name, value)
    if problem is not None:
        raise InvalidRequest(problem)
    return value


def roles_from(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(role, str) for role in value):
        raise InvalidRequest("roles must be a list of strings.")
    if len(value) > MAX_ROLES:
        raise InvalidRequest(f"roles has more than {MAX_ROLES} members.")
    for role in value:
        problem = role_problem(role)
        if problem is not None:
            raise InvalidRequest(problem)
    return tuple(dict.fromkeys(value))


def role_problem(role: str) -> str | None:
    if _ROLE.fullmatch(role):
        return None
    return "A role name is 1 to 64 of A-Z a-z 0-9 _ . : - (no spaces)."


def name_problem(name: str, value: str) -> str | None:
    if len(value) > MAX_NAME:
        return f"{name} is longer than {MAX_NAME} characters."
    if any(unicodedata.category(c) in _REFUSED_IN_NAMES or c in _BIDI_CONTROLS for c in value):
        return f"{name} contains a control character or a bidi override."
    return None


def email_problem(email: str) -> str | None:
    """A pragmatic check, not RFC 5322's grammar: one `@`, a local part of printable
    characters without spaces, and a domain of at least two labels. Quoted local parts and
    address literals are refused: no mail client offers them, and they are how
    addresses are made to look like others."""
    if len(email) > MAX_EMAIL:
        return f"email is longer than {MAX_EMAIL} characters."
    local, at, domain = email.partition("@")
    if (
        not at
        or not local
        or len(local) > MAX_EMAIL_LOCAL
        or "@" in domain
        or any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or '"' in local
    ):
        return "email must be an address such as alice@example.org."
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return "email must be an address such as alice@example.org."
    return None


def _locale_ok(locale: str) -> bool:
    return len(locale) <= MAX_LOCALE and _LOCALE.fullmatch(locale) is not None


def identity_claims(username: str, profile: Profile, scopes: list[str]) -> dict[str, Any]:
    """The claims the identity scopes in `scopes` give (Core §5.4), those that are set."""
    claims: dict[str, Any] = {}
    if PROFILE in scopes:
        values = {
            "preferred_username": username,
            "name": profile.name,
            "given_name": profile.given_name,
            "family_name": profile.family_name,
            "locale": profile.locale,
        }
        claims.update({k: v for k, v in values.items() if v is not None})
    if EMAIL in scopes and profile.email is not None:
        claims["email"] = profile.email
        claims["email_verified"] = profile.email_verified
    return claims
