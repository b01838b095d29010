"""A lock held across processes, for the installs the tests make on first use (apt-get, npm ci):
under pytest-xdist two workers would otherwise run them at once, and apt-get fails on dpkg's
lock while `npm ci` empties node_modules under the other's feet."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Blocks until no other process on this machine holds the lock `name`; the loser then
    finds the winner's install done. flock, so a killed holder's lock goes with it."""
    path = Path(tempfile.gettempdir()) / f"authserver-tests-{name}.lock"
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def apt_get_install(present: Callable[[], bool], *packages: str, timeout: float) -> None:
    """In CI (which runs as root), `apt-get install`s the packages unless `present()`; an install
    that fails or leaves it missing fails the test. Elsewhere the caller skips when missing."""
    with machine_lock("apt"):  # one apt-get at a time; the next worker finds it there
        if present() or not os.environ.get("CI"):
            return
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", *packages]):
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                timeout=timeout,
            )
            if done.returncode != 0:
                pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr}")
        if not present():
            pytest.fail(f"apt-get install {' '.join(packages)} did not provide what is needed")
