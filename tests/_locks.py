"""A lock held across processes, for the installs the tests make on first use (apt-get, npm ci):
under pytest-xdist two workers would otherwise run them at once, and apt-get fails on dpkg's
lock while `npm ci` empties node_modules under the other's feet."""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
