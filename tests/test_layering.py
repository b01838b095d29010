"""Imports point one way (STYLE.md), and every module's place says which way that is.

A module's layer comes from where it lives, so a new module is checked the day it is added:

    rank 0  foundation   config errors inputs tokens/scopes: imports nothing else of ours
    rank 1  domain       any other module at the package root (services: what the use
                         cases work with), and keys/ tokens/ accounts/ i18n/ mail/
                         metadata_documents/
    rank 2  use cases    actions/: one module (or folder) per use case
    rank 3  telemetry    telemetry/
    rank 4  adapters     db/ (SQLAlchemy, asyncpg) and http/ (Starlette), which never meet
    rank 5  roots        app __main__ cli/: compose the rest; nothing else imports them

No module imports one of a higher rank. The first three ranks import no web, database or
server library. The verifier kit's re-exports (verify*.py) stand apart: they import the kit
only (tests/test_verify_layering.py). Every HTTP handler reads parse -> one use-case call ->
render.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authserver"

FOUNDATION = {"config", "errors", "inputs", "tokens/scopes"}
ROOTS = {"app", "__main__"}
KIT = {"verify", "verify_introspect", "verify_starlette"}
FOLDERS = {
    "keys": "domain",
    "tokens": "domain",
    "accounts": "domain",
    "i18n": "domain",
    "mail": "domain",
    "metadata_documents": "domain",
    "actions": "use case",
    "telemetry": "telemetry",
    "db": "db",
    "http": "http",
    "cli": "root",
}
RANKS = {"foundation": 0, "domain": 1, "use case": 2, "telemetry": 3, "db": 4, "http": 4, "root": 5}
# Libraries that belong to one adapter; the core (ranks 0-2) imports none of them.
ADAPTER_LIBRARIES = {
    "starlette": {"http", "root"},
    "uvicorn": {"http", "root"},
    "sqlalchemy": {"db", "root"},
    "alembic": {"db", "root"},
    "asyncpg": {"db"},
    "aiosqlite": {"db"},
    "prometheus_client": {"telemetry", "http"},
}
CORE = {"foundation", "domain", "use case"}


def layer_of(path: Path) -> str:
    """The layer of a file of the package, from its folder or, at the root, its name."""
    relative = path.relative_to(PACKAGE)
    if relative.with_suffix("").as_posix() in FOUNDATION:
        return "foundation"
    if len(relative.parts) > 1:
        folder = relative.parts[0]
        if folder not in FOLDERS:
            raise AssertionError(f"{relative}: a new folder needs a layer in FOLDERS")
        return FOLDERS[folder]
    name = relative.stem
    if name in ROOTS:
        return "root"
    if name in KIT:
        return "kit"
    return "domain"


def module_path(module: str) -> Path | None:
    """The file of one of our modules (`authserver.x.y`), or None for anything else."""
    parts = module.split(".")
    if parts[0] != "authserver":
        return None
    for end in range(len(parts), 1, -1):
        base = PACKAGE.joinpath(*parts[1:end])
        if base.with_suffix(".py").exists():
            return base.with_suffix(".py")
        if (base / "__init__.py").exists():
            return base / "__init__.py"
    return None


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


def our_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) != "kit")


def test_every_module_has_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer_of(path)  # raises for a folder with no layer


@pytest.mark.parametrize("path", our_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    layer = layer_of(path)
    wrong = []
    for name in imports(path):
        target = module_path(name)
        if target is None or target == path or target.name == "__init__.py" == path.name:
            continue
        other = layer_of(target)
        where = target.relative_to(PACKAGE).as_posix()
        if other == "kit":
            wrong.append(f"{where} (the verifier kit: import it from authserver_verify)")
        elif other == "root" and layer != "root":
            wrong.append(f"{where} (a composition root: only the roots import it)")
        elif RANKS[other] > RANKS[layer]:
            wrong.append(f"{where} ({other}, above {layer})")
        elif {layer, other} == {"db", "http"}:
            wrong.append(f"{where} ({other}: db/ and http/ never meet; the use cases join them)")
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(set(wrong))}"


@pytest.mark.parametrize("path", our_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_libraries_stay_in_their_adapter(path: Path) -> None:
    layer = layer_of(path)
    found = {name.split(".")[0] for name in imports(path)}
    wrong = sorted(
        lib for lib in found & ADAPTER_LIBRARIES.keys() if layer not in ADAPTER_LIBRARIES[lib]
    )
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {wrong}"


def test_the_foundation_imports_nothing_else_of_ours() -> None:
    for name in FOUNDATION:
        ours = {m for m in imports(PACKAGE / f"{name}.py") if m.startswith("authserver")}
        assert {layer_of(p) for m in ours if (p := module_path(m))} <= {"foundation"}, name


def test_the_checks_above_see_real_imports() -> None:
    # Guards against a walker that finds nothing and so passes everything.
    assert {"app.py", "http/routes.py"} <= importers("starlette")
    assert "db/families.py" in importers("sqlalchemy")
    assert "authserver.db.keys.SqlKeyStore" in imports(PACKAGE / "app.py")
    assert module_path("authserver.keys.manager.SigningKeys") == PACKAGE / "keys" / "manager.py"
    assert layer_of(PACKAGE / "refresh.py") == "domain"
    assert layer_of(PACKAGE / "actions" / "grants" / "password.py") == "use case"
    assert layer_of(PACKAGE / "db" / "families.py") == "db"
    assert len(our_modules()) > 50


def use_case_calls(function: ast.AsyncFunctionDef, names: set[str], modules: set[str]) -> int:
    """How many awaited calls in `function` go to actions/: `f(...)` for a name imported from
    there, `m.f(...)` for a module of it imported as `m`."""
    count = 0
    for node in ast.walk(function):
        if not (isinstance(node, ast.Await) and isinstance(node.value, ast.Call)):
            continue
        called = node.value.func
        if isinstance(called, ast.Name) and called.id in names:
            count += 1
        elif (
            isinstance(called, ast.Attribute)
            and isinstance(called.value, ast.Name)
            and called.value.id in modules
        ):
            count += 1
    return count


def handlers_and_their_use_case_calls() -> dict[str, int]:
    """Every public `async def` at the top of a module under http/: how many use cases it calls
    (the admin API's guard, http/admin.admin_only, checks the bearer token before each)."""
    found: dict[str, int] = {}
    for path in sorted((PACKAGE / "http").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        modules: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "authserver.actions"
            ):
                for alias in node.names:
                    base = PACKAGE.joinpath(*f"{node.module}.{alias.name}".split(".")[1:])
                    is_module = base.with_suffix(".py").exists() or base.is_dir()
                    (modules if is_module else names).add(alias.asname or alias.name)
        for node in tree.body:
            if isinstance(node, ast.AsyncFunctionDef) and not node.name.startswith("_"):
                where = f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"
                found[where] = use_case_calls(node, names, modules)
    return found


def test_every_handler_makes_one_use_case_call() -> None:
    calls = handlers_and_their_use_case_calls()
    assert calls["http/sign_in.py:login"] == 1  # the walker sees real calls
    assert calls["http/admin/keys.py:rotate_keys"] == 1
    more = {handler: count for handler, count in calls.items() if count > 1}
    assert not more, f"handlers that make more than one use-case call: {more}"
