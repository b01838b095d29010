"""The server's names for the verifier kit (authserver/verify*.py) are aliases of the kit, and
importing them loads nothing else of the server. The kit's own import rules are checked by its
tests (verifier/tests/test_kit_imports.py), in a venv without the server
(tests/test_verifier_distribution.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import authserver_verify.errors
import authserver_verify.introspect
import authserver_verify.jose
import authserver_verify.starlette
import authserver_verify.verifier
from tests.test_layering import PACKAGE, imports

# Where each name is defined now, in the kit.
KIT = (
    authserver_verify.errors,
    authserver_verify.jose,
    authserver_verify.verifier,
    authserver_verify.introspect,
    authserver_verify.starlette,
)

# What each module offered before the kit moved to verifier/: its public names.
OLD_NAMES = {
    "verify": (
        "DEFAULT_REQUIRED FORBIDDEN_HEADERS MAX_DOCUMENT_BYTES MAX_TOKEN_BYTES BadSignature "
        "Expired Fetch Fetched InvalidToken KeySetUnavailable MalformedToken MissingClaim "
        "NotYetValid PublicKey Revoked UnacceptableHeader UnknownKey VerificationError Verifier "
        "WrongAudience WrongIssuer parse_jwks urllib_fetch"
    ),
    "verify_introspect": "IntrospectionUnavailable Introspector Post urllib_post",
    "verify_starlette": "BearerAuthMiddleware Endpoint authenticate require_active require_scope",
}


@pytest.mark.parametrize("name", OLD_NAMES)
def test_the_old_modules_only_re_export_the_kit(name: str) -> None:
    found = imports(PACKAGE / f"{name}.py")
    assert {n.split(".")[0] for n in found} <= {"__future__", "authserver_verify"}


@pytest.mark.parametrize("name", OLD_NAMES)
def test_every_old_name_is_still_there_and_is_the_kits_object(name: str) -> None:
    # `except authserver.verify.InvalidToken` must catch what the kit raises.
    old = importlib.import_module(f"authserver.{name}")
    names = OLD_NAMES[name].split()
    assert sorted(old.__all__) == sorted(names)
    for attribute in names:
        defined = [vars(m)[attribute] for m in KIT if attribute in vars(m)]
        assert defined and all(getattr(old, attribute) is d for d in defined), attribute


def test_importing_the_aliases_loads_nothing_of_the_server() -> None:
    # A fresh interpreter: what the import really drags in, transitively.
    script = textwrap.dedent("""
        import sys
        import authserver.verify, authserver.verify_starlette
        loaded = sorted(m for m in sys.modules if m.startswith(("authserver", "sqlalchemy",
            "alembic", "asyncpg", "aiosqlite", "argon2", "uvicorn", "httpx")))
        print(" ".join(loaded))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert [m for m in result.stdout.split() if not m.startswith("authserver_verify")] == [
        "authserver",
        "authserver.verify",
        "authserver.verify_starlette",
    ]
