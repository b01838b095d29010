"""The live-server fixtures of tests/http/test_verify_live.py, shared with the interop tests, and
Node with this folder's npm packages installed.

The `node` fixture installs the pinned packages itself (`npm ci` from package-lock.json into
tests/interop/node_modules, git-ignored). Without node or npm the tests that need it are skipped
with the reason, except in CI (the CI variable set), where they fail instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.http.test_verify_live import http, live, live_overrides
from tests.npm_packages import install

__all__ = ["http", "live", "live_overrides", "node"]

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with this folder's packages installed beside its scripts."""
    return install(HERE)
