"""The app's start-up as a serving worker has it (app.app_from_environment) against the one tests
build: only the first freezes what start-up made (app.freeze_heap), as a test process builds
hundreds of apps and would keep every one."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from authserver.app import app_from_environment
from tests.test_metrics_workers import environment


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # what a test froze goes back to the collector


async def test_a_serving_worker_freezes_what_start_up_made(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    for name in [name for name in os.environ if name.startswith("AUTHSERVER_")]:
        monkeypatch.delenv(name)
    for name, value in environment(database_url, tmp_path).items():
        monkeypatch.setenv(name, value)
    # app_from_environment tunes logging for the process; put back after the test.
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    app = app_from_environment()
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        # The modules, and the services start-up built, are out of the collector's walks.
        assert gc.get_freeze_count() > 10_000
        assert _frozen(app.state.services)


# `unfrozen` first: set up after `app`, it would undo a freeze the app's start-up made.
async def test_an_app_a_test_builds_freezes_nothing(unfrozen: None, app: Starlette) -> None:
    assert gc.get_freeze_count() == 0
    assert not _frozen(app.state.services)


def _frozen(thing: object) -> bool:
    """Whether `thing` is out of the collector's generations (gc.get_objects lists those)."""
    assert gc.is_tracked(thing)
    return all(found is not thing for found in gc.get_objects())
