"""The verifier kit is importable on its own: services install it without the server."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.test_layering import PACKAGE, imports

STDLIB = set(sys.stdlib_module_names)


def _top_level(found: set[str]) -> set[str]:
    return {name.split(".")[0] for name in found if name} - STDLIB - {"__future__"}


def test_verify_imports_only_pyjwt_and_cryptography() -> None:
    found = imports(PACKAGE / "verify.py")
    assert _top_level(found) <= {"jwt", "cryptography"}
    assert not {name for name in found if name.startswith("authserver")}


def test_the_starlette_glue_adds_only_starlette_and_the_verifier() -> None:
    found = imports(PACKAGE / "verify_starlette.py")
    assert _top_level(found) <= {"starlette", "authserver"}
    assert {n for n in found if n.startswith("authserver")} <= {
        "authserver.verify",
        *(
            f"authserver.verify.{name}"
            for name in ("InvalidToken", "KeySetUnavailable", "Verifier")
        ),
        "authserver.verify_introspect",
        *(
            f"authserver.verify_introspect.{name}"
            for name in ("IntrospectionUnavailable", "Introspector")
        ),
    }


def test_the_introspector_adds_nothing_but_the_verifier() -> None:
    found = imports(PACKAGE / "verify_introspect.py")
    assert _top_level(found) <= {"authserver"}
    assert {n.rsplit(".", 1)[0] for n in found if n.startswith("authserver.")} <= {
        "authserver",
        "authserver.verify",
    }


def test_importing_the_kit_loads_nothing_of_the_server() -> None:
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
    assert result.stdout.split() == [
        "authserver",
        "authserver.verify",
        "authserver.verify_introspect",
        "authserver.verify_starlette",
    ]
