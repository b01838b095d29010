"""The conditions several statements share, each named once: one home per rule.

Each is decided inside the statement that acts on it, never read first in Python: a disable, an
/end-session or a client change that another instance commits at the same moment is settled by
the database, in that one statement (or under the row lock it takes). So these are SQL text, to
be spliced into the raw statements of db/families.py, db/codes.py and db/login_sessions.py (the
Postgres hot paths among them run as one statement through asyncpg, db/direct.py). `alias` is
the table's alias in the statement; None names the bare column, in a statement on that table
alone.
"""

from __future__ import annotations


def _column(alias: str | None, column: str) -> str:
    return column if alias is None else f"{alias}.{column}"


def user_enabled(alias: str | None = "u") -> str:
    """A user still enabled may sign in, be issued a code, exchange one, and refresh. Deleting
    a user disables it too, so this refuses deleted users as well."""
    return f"NOT {_column(alias, 'disabled')}"


def client_enabled(alias: str | None = "c") -> str:
    """A client still enabled may start and rotate families (deleting disables too)."""
    return f"NOT {_column(alias, 'disabled')}"


def client_may_refresh(alias: str | None = "c") -> str:
    """The client is still registered with the refresh_token grant: a whole space-delimited
    token of its stored grant_types. A client that lost it keeps its families, unspent, should
    the grant come back."""
    return f"(' ' || {_column(alias, 'grant_types')} || ' ') LIKE '% refresh_token %'"


def login_session_live(alias: str | None = "s") -> str:
    """The login session (the single sign-on cookie) is not ended and not over: it may touch,
    issue codes, and have them exchanged. Binds `:now`. (Idleness is /authorize's own rule,
    checked where the cookie is touched.)"""
    return f"{_column(alias, 'revoked_at')} IS NULL AND {_column(alias, 'expires_at')} > :now"
