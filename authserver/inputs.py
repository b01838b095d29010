"""What a string from outside must be before it may reach a store, wherever it came in: a
form field, a JSON member, a claim of a signed token."""

from __future__ import annotations


def storable(text: str) -> bool:
    """False for NUL (Postgres text cannot hold it) and lone surrogates (JSON can escape them,
    but they are not UTF-8): either would otherwise fail in a driver, as a 500, or be stored
    by SQLite and fail later."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
