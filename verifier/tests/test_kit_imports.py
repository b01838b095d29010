"""The kit stands alone: PyJWT, cryptography and the standard library, Starlette only in its
Starlette glue, and nothing of the server it verifies tokens for."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import authserver_verify

KIT = Path(authserver_verify.__file__).resolve().parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found.add((node.module or "").split(".")[0])
    return found - STDLIB


@pytest.mark.parametrize("path", sorted(KIT.glob("*.py")), ids=lambda path: path.name)
def test_each_module_imports_only_what_the_distribution_declares(path: Path) -> None:
    allowed = {"jwt", "cryptography", "authserver_verify"}
    if path.name == "starlette.py":
        allowed.add("starlette")  # the `starlette` extra
    assert top_level_imports(path) <= allowed


def test_the_walk_above_sees_real_imports() -> None:
    # Guards against a walker that finds nothing and so passes everything.
    assert top_level_imports(KIT / "starlette.py") == {"starlette", "authserver_verify"}
    assert "jwt" in top_level_imports(KIT / "verifier.py")


def test_importing_the_kit_without_the_extra_loads_no_web_framework() -> None:
    # A fresh interpreter: what `import authserver_verify` really drags in, transitively.
    script = textwrap.dedent("""
        import sys
        import authserver_verify
        print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "authserver_verify" in loaded
    assert not loaded & {"authserver", "starlette", "anyio", "httpx", "sqlalchemy", "uvicorn"}
