"""How the domain's values are stored where the schema keeps them compact (0008).

The domain speaks of a refresh token's hash as SHA-256 in hex and of a family id as a UUID
string; refresh_tokens stores the hash as its 32 bytes, and Postgres stores family ids as
native `uuid` (16 bytes; drivers hand them back as UUID objects). These convert at the edge.
"""

from __future__ import annotations

import uuid


def stored_hash(hex_hash: str) -> bytes:
    """A SHA-256 hex digest as the 32 bytes refresh_tokens stores."""
    return bytes.fromhex(hex_hash)


def family_key(family_id: str) -> str | None:
    """`family_id` if it is a family id as this server writes them (a UUID's canonical string),
    else None: no family has it, and Postgres would refuse it as a `uuid` parameter."""
    try:
        canonical = str(uuid.UUID(family_id))
    except (ValueError, TypeError, AttributeError):
        return None
    return family_id if canonical == family_id else None


def family_id(value: object) -> str:
    """A family id as read back: a UUID object from Postgres, a string from SQLite."""
    return str(value)
