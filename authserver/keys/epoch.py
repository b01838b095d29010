"""The key epoch: a counter the workers of one `serve` share, moved by every key change.

Each worker of `serve --workers N` holds a key ring of its own. When one of them changes the
keys (an admin rotation or revocation, a scheduled rotation), the others must not go on signing
with their old ring until their next periodic reload: a revoked key signs nothing more. So the
worker that changed the keys bumps the epoch once its transaction has committed, and every
worker reads it before signing, reloading its ring first when it moved (signing.SigningKeys).

`serve` makes the counter: eight bytes in a file of its own, whose path reaches the workers
through AUTHSERVER_KEY_EPOCH_FILE (they are spawned as fresh interpreters and inherit it). Each
maps the file, so a read is a memory read, cheap enough for every token. Without the variable
(one process, the CLI, tests) the epoch is the process's own: its reload after its own change
is all it needs. Other instances and the CLI do not see this file; their changes arrive with
the periodic reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from typing import Protocol

ENVIRONMENT = "AUTHSERVER_KEY_EPOCH_FILE"
_COUNTER = struct.Struct("<Q")


class KeyEpoch(Protocol):
    def read(self) -> int: ...

    def bump(self) -> None:
        """Called after a key change has committed, before it is answered."""
        ...


class LocalEpoch:
    """One process's epoch."""

    def __init__(self) -> None:
        self._value = 0

    def read(self) -> int:
        return self._value

    def bump(self) -> None:
        self._value += 1


class SharedEpoch:
    """The epoch in a file every worker maps (MAP_SHARED: a write is seen by all at once)."""

    def __init__(self, path: str) -> None:
        self._path = path
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), _COUNTER.size)

    def read(self) -> int:
        # A read racing a bump may see a torn value: it differs from the last one seen, so
        # the worst it causes is one reload more.
        value: int = _COUNTER.unpack_from(self._map)[0]
        return value

    def bump(self) -> None:
        # Two workers changing keys at once must not both write the same successor.
        with open(self._path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _COUNTER.pack_into(self._map, 0, (self.read() + 1) % 2**64)


def epoch_from_environment(environ: Mapping[str, str] = os.environ) -> KeyEpoch:
    """The shared epoch `serve` made for its workers, else this process's own."""
    path = environ.get(ENVIRONMENT)
    return SharedEpoch(path) if path else LocalEpoch()


@contextlib.contextmanager
def shared_epoch(workers: int) -> Iterator[None]:
    """For `serve`, around the workers' lifetime: with several workers, the epoch file, made
    for them (mode 0600) and removed afterwards. One worker is the whole server: nothing to
    share."""
    if workers <= 1:
        yield
        return
    descriptor, path = tempfile.mkstemp(prefix="authserver-key-epoch-")
    with os.fdopen(descriptor, "wb") as file:
        file.write(bytes(_COUNTER.size))
    os.environ[ENVIRONMENT] = path
    try:
        yield
    finally:
        os.environ.pop(ENVIRONMENT, None)
        os.unlink(path)
