"""Imports point one way (STYLE.md): web and SQL libraries stay at the edges of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authserver"
DOMAIN = (
    "config errors passwords keys tokens scopes users clients sessions signing services grants "
    "revocation introspection revocation_feed throttle rotation audit admin inputs"
).split()
DATABASE = ("sqlalchemy", "alembic")


def imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved against the package."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.update([base, *(f"{base}.{alias.name}" for alias in node.names)])
    return found


def importers(*prefixes: str) -> set[str]:
    """The package's files, relative to it, that import any module under `prefixes`."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(name == p or name.startswith(p + ".") for name in imports(path) for p in prefixes)
    }


def test_starlette_is_imported_only_by_the_http_layer() -> None:
    # verify_starlette.py is now an alias of the kit's glue (authserver_verify.starlette).
    outside = {f for f in importers("starlette") if not f.startswith("http/")}
    assert outside <= {"app.py"}


def test_sqlalchemy_and_alembic_are_imported_only_by_the_database_layer() -> None:
    outside = {f for f in importers(*DATABASE) if not f.startswith("db/")}
    assert outside <= {"app.py", "cli.py"}


@pytest.mark.parametrize("name", DOMAIN)
def test_the_domain_imports_no_web_or_database_code(name: str) -> None:
    forbidden = ("starlette", *DATABASE, "authserver.http", "authserver.db")
    found = imports(PACKAGE / f"{name}.py")
    assert not {m for m in found for p in forbidden if m == p or m.startswith(p + ".")}


def test_the_http_layer_never_reaches_the_database() -> None:
    assert not {f for f in importers("authserver.db") if f.startswith("http/")}


def test_the_checks_above_see_real_imports() -> None:
    # Guards against a walker that finds nothing and so passes everything.
    assert {"app.py", "http/routes.py"} <= importers("starlette")
    assert "db/stores.py" in importers("sqlalchemy")
    assert "authserver.db.stores.SqlKeyStore" in imports(PACKAGE / "app.py")
