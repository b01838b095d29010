"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive tokens."""

from __future__ import annotations

import re

from authserver.errors import InvalidScope

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). Always `fullmatch`: `$` also matches before a
# final newline, which let `profile\n` through.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
ADMIN = "admin"
# OpenID Connect Core §3.1.2.1: `openid` marks a request as OpenID Connect; `profile` and
# `email` (§5.4) select the claims of the user's own profile (profiles.py). None of them is a
# permission, so every user holds them (API.md): a client allowed them gets them for any user.
OPENID = "openid"
PROFILE = "profile"
EMAIL = "email"
IDENTITY_SCOPES = (OPENID, PROFILE, EMAIL)
# What every user holds, whatever their row says: only the identity scopes, never permissions.
EVERY_USER_HOLDS = IDENTITY_SCOPES


def parse_scope(raw: str | None) -> tuple[str, ...] | None:
    """None when absent; the distinct tokens, in order, otherwise."""
    if raw is None:
        return None
    tokens = raw.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise InvalidScope("The scope is malformed.")
    return tuple(dict.fromkeys(tokens))


def valid_scope_tokens(tokens: list[str] | tuple[str, ...]) -> bool:
    return all(isinstance(t, str) and _SCOPE_TOKEN.fullmatch(t) for t in tokens)


def grant(
    requested: tuple[str, ...] | None, allowed: tuple[str, ...], held: tuple[str, ...] | None
) -> str:
    """The scope to issue.

    `allowed` is what the client may ask for; asking beyond it is `invalid_scope`. `held` is
    what the user has (None for a client acting for itself), with what every user holds;
    RFC 6749 §3.3 lets the server issue less than was asked, so scopes the user lacks are
    dropped. Without a request the
    client gets its defaults, except `admin`, which must always be asked for by name.
    """
    if requested is None:
        requested = tuple(s for s in allowed if s != ADMIN)
    elif not set(requested) <= set(allowed):
        raise InvalidScope()
    if held is not None:
        holds = {*held, *EVERY_USER_HOLDS}
        requested = tuple(s for s in requested if s in holds)
    return " ".join(requested)


def narrow(requested: tuple[str, ...] | None, granted: str) -> str:
    """The scope of a refresh: `granted` (the session's) unless a subset of it is asked for.

    RFC 6749 §6: the requested scope MUST NOT include any scope not originally granted by the
    resource owner, and if omitted is treated as equal to the scope originally granted.
    Every refresh path (rotation, grace) takes its scope from here, never from the request.
    """
    if requested is None:
        return granted
    if not set(requested) <= set(granted.split()):
        raise InvalidScope()
    return " ".join(requested)


def still_held(scope: str, user_scopes: tuple[str, ...], client_scopes: tuple[str, ...]) -> str:
    """`scope` less what the user or the client no longer holds: a refresh issues at most what
    its session was granted and what both hold as it rotates (a demotion, a scope taken from
    the user or the client, reaches live sessions at their next refresh)."""
    user = {*user_scopes, *EVERY_USER_HOLDS}
    client = set(client_scopes)
    return " ".join(s for s in scope.split() if s in user and s in client)
