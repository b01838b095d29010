"""npm packages pinned by a folder's package.json and package-lock.json, installed into its
node_modules (git-ignored) by `npm ci` when missing or at another version. Without node or npm
the tests that need them are skipped with the reason, except in CI (the CI variable set),
where they fail instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._locks import machine_lock


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def installed(folder: Path) -> bool:
    """Every package of package.json is installed at the version package-lock.json pins."""
    wanted = json.loads((folder / "package.json").read_text())["dependencies"]
    lock = json.loads((folder / "package-lock.json").read_text())["packages"]
    for name in wanted:
        found = folder / "node_modules" / name / "package.json"
        pinned = lock[f"node_modules/{name}"]["version"]
        if not found.exists() or json.loads(found.read_text())["version"] != pinned:
            return False
    return True


def install(folder: Path) -> str:
    """The node binary, with `folder`'s packages installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed for the npm packages of " + folder.name)
    assert node is not None and npm is not None
    # `npm ci` first empties node_modules: another worker must not read it meanwhile.
    with machine_lock("npm"):
        if not installed(folder):
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                unavailable(f"npm ci failed in {folder}: {result.stderr.strip()[-500:]}")
    return node
