"""The verifier kit as a service gets it: `pip install ./verifier` into a fresh venv, with
nothing of the server. Its own tests pass there, and none of the server's dependencies (nor
the server) is installed. pip may use this machine's index configuration and cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the server needs and a service that only verifies tokens must not get.
SERVER_ONLY = {
    "sqlalchemy",
    "asyncpg",
    "argon2-cffi",
    "argon2-cffi-bindings",
    "alembic",
    "uvicorn",
    "aiosqlite",
    "prometheus-client",
    "authserver",
}


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        # This process's own venv must not leak into the new one's pip or Python.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
        }
        self.env["PATH"] = f"{path / 'bin'}:/usr/local/bin:/usr/bin:/bin"

    def run(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path / "bin" / args[0]), *args[1:]],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pip(self, *args: str, cwd: Path) -> None:
        result = self.run("pip", "--disable-pip-version-check", *args, cwd=cwd)
        assert result.returncode == 0, f"pip {' '.join(args)}\n{result.stdout}\n{result.stderr}"

    def installed(self, cwd: Path) -> dict[str, str]:
        result = self.run("pip", "--disable-pip-version-check", "list", "--format=json", cwd=cwd)
        assert result.returncode == 0, result.stderr
        return {
            p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(result.stdout)
        }


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Path]:
    """A venv with `pip install ./verifier` alone, from a copy of verifier/ and nothing else of
    the repository (so the kit cannot lean on a file beside it)."""
    workspace = tmp_path_factory.mktemp("kit")
    source = workspace / "verifier"
    shutil.copytree(
        ROOT / "verifier",
        source,
        ignore=shutil.ignore_patterns(
            "__pycache__", ".pytest_cache", "*.egg-info", "build", "dist"
        ),
    )
    subprocess.run([sys.executable, "-m", "venv", str(workspace / "venv")], check=True, timeout=120)
    venv = Venv(workspace / "venv")
    venv.pip("install", "-q", str(source), cwd=workspace)
    return venv, source


def test_the_kit_alone_brings_only_pyjwt_and_cryptography(kit: tuple[Venv, Path]) -> None:
    venv, source = kit
    installed = venv.installed(source.parent)
    assert "authserver-verify" in installed
    assert not SERVER_ONLY & installed.keys()
    assert not {"starlette", "anyio", "httpx"} & installed.keys()  # only with the extras
    # pip and its bootstrap, the kit, PyJWT, cryptography and cryptography's own cffi stack.
    assert installed.keys() <= {
        "pip",
        "setuptools",
        "authserver-verify",
        "pyjwt",
        "cryptography",
        "cffi",
        "pycparser",
        "typing-extensions",
    }, installed
    check = venv.run("pip", "check", cwd=source.parent)
    assert check.returncode == 0, check.stdout
    server = venv.run("python", "-c", "import authserver", cwd=source.parent)
    assert "ModuleNotFoundError: No module named 'authserver'" in server.stderr


def test_the_kits_own_tests_pass_there_and_still_bring_nothing_of_the_server(
    kit: tuple[Venv, Path],
) -> None:
    venv, source = kit
    venv.pip("install", "-q", f"{source}[test]", cwd=source.parent)
    assert not SERVER_ONLY & venv.installed(source.parent).keys()
    # Only the installed package is left to import: not the copy's source beside the tests.
    shutil.rmtree(source / "authserver_verify")
    result = venv.run("pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=source)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
