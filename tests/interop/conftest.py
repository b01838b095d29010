"""The live-server fixtures of tests/http/test_verify_live.py, shared with the interop tests, and
Node with this folder's npm packages installed.

The `node` fixture installs the pinned packages itself (`npm ci` from package-lock.json into
tests/interop/node_modules, git-ignored). Without node or npm the tests that need it are skipped
with the reason, except in CI (the CI variable set), where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.http.test_verify_live import http, live, live_overrides

__all__ = ["http", "live", "live_overrides", "node"]

HERE = Path(__file__).parent


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _installed() -> bool:
    """Every package of package.json is installed at the version package-lock.json pins."""
    wanted = json.loads((HERE / "package.json").read_text())["dependencies"]
    lock = json.loads((HERE / "package-lock.json").read_text())["packages"]
    for name in wanted:
        installed = HERE / "node_modules" / name / "package.json"
        pinned = lock[f"node_modules/{name}"]["version"]
        if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
            return False
    return True


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with this folder's packages installed beside its scripts."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the npm interop tests")
    assert node is not None and npm is not None
    if not _installed():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            _unavailable(f"npm ci failed in {HERE}: {result.stderr.strip()[-500:]}")
    return node
