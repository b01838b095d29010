"""The password policy (API.md): applied wherever a password is set, the CLI and the admin API.

At least `AUTHSERVER_PASSWORD_MIN_LENGTH` characters and at most 1,024 (NIST SP 800-63B
§5.1.1.2: a minimum, a generous maximum, any Unicode, no composition rules), not the username,
and not among the common passwords of zxcvbn's lists (Dropbox's, kept by others: we keep no
list of our own). The error names the rule that failed, never the password.
"""

from __future__ import annotations

from functools import cache

from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

from authserver.accounts.users import MAX_PASSWORD, normalise_password
from authserver.errors import InvalidRequest
from authserver.i18n.translations import N_


class WeakPassword(InvalidRequest):
    """The broken rule, as a sentence of the pages' catalogs (`sentence % values`), so the
    account page says it in the reader's language; the API's description is the English."""

    def __init__(self, sentence: str, **values: int) -> None:
        super().__init__(sentence % values)
        self.sentence = sentence
        self.values: dict[str, int | str] = dict(values)


@cache
def common_passwords() -> frozenset[str]:
    """zxcvbn's 30,000 most common passwords (lower case), loaded on first use."""
    listed: list[str] = FREQUENCY_LISTS["passwords"]  # split from one string at its import
    return frozenset(listed)


def check_password(password: str, username: str, min_length: int) -> str:
    """The password as it is to be hashed (NFKC), or InvalidRequest naming the broken rule."""
    too_long = N_("The password is longer than %(length)d characters.")
    if len(password) > MAX_PASSWORD:  # before normalising: NFKC can make a string longer
        raise WeakPassword(too_long, length=MAX_PASSWORD)
    normalised = normalise_password(password)
    if len(normalised) < min_length:
        raise WeakPassword(
            N_("The password is shorter than %(length)d characters."), length=min_length
        )
    if len(normalised) > MAX_PASSWORD:
        raise WeakPassword(too_long, length=MAX_PASSWORD)
    if normalised.casefold() == normalise_password(username).casefold():
        raise WeakPassword(N_("The password is the username."))
    if normalised.casefold() in common_passwords():
        raise WeakPassword(N_("The password is a commonly used one; choose another."))
    return normalised
