"""Metrics across `serve --workers N`: prometheus-client's multiprocess mode.

Each uvicorn worker is a process with values of its own, and a scrape reaches one of them. In
multiprocess mode every process writes its values to files in PROMETHEUS_MULTIPROC_DIR instead,
one set per pid, and /metrics merges the files: counters and histograms add up over every worker
that ever ran in this `serve` (a worker restarted keeps its counts), gauges combine as each says
(telemetry/metrics.py). prometheus-client picks its storage when it is first imported, so
the variable must be set before the workers start: uvicorn spawns them as fresh interpreters,
which inherit it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
# Files of the gauges that count live processes only (livesum, ...): gauge_livesum_1234.db
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


def _current_pid() -> int:
    return _pid


os.register_at_fork(after_in_child=_renew_pid)


def use_remembered_pid() -> None:
    """Before the first metric is made: multiprocess values that know their process by a pid
    kept in memory, renewed in a forked child, rather than by os.getpid() at every increment
    (prometheus-client's default, to notice a fork): 1.6 -> 0.85 µs per increment here, and
    a request makes three."""
    if getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
            process_identifier=_current_pid
        )


@contextmanager
def shared_directory(workers: int) -> Iterator[None]:
    """For `serve`, around the workers' lifetime: with several workers and no
    PROMETHEUS_MULTIPROC_DIR, a private directory made for them and removed afterwards. A
    directory the operator set is used as it is, first cleared of what earlier runs left there
    (prometheus-client counts every file it finds)."""
    given = os.environ.get(DIRECTORY)
    if given:
        # This process imported prometheus-client with the variable set, so it has files there
        # too (opened at import, before this). With one worker it is the server: its own files
        # stay. With several it only supervises: removed, its files can add nothing to a scrape.
        own = {os.getpid()} if workers <= 1 else set()
        _clear(Path(given), keep_pids=own)
        yield
        return
    if workers <= 1:
        yield  # one process: its own registry is the whole truth
        return
    path = tempfile.mkdtemp(prefix="authserver-metrics-")  # mode 0700: this user's only
    os.environ[DIRECTORY] = path
    try:
        yield
    finally:
        del os.environ[DIRECTORY]
        shutil.rmtree(path, ignore_errors=True)


def scraped_registry() -> CollectorRegistry:
    """What /metrics exposes: this process's registry, or in multiprocess mode every process's
    files merged. prometheus-client's process and platform collectors are left out then: they
    would describe whichever worker happens to answer."""
    path = os.environ.get(DIRECTORY)
    if not path:
        return REGISTRY
    forget_dead_processes(Path(path))
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
    return merged


def forget_dead_processes(path: Path) -> None:
    """Drops the live-only gauge files of processes that are gone (prometheus-client's
    `mark_process_dead`). uvicorn's supervisor restarts a dead worker but offers no hook to
    tell us, so the scrape checks each pid itself; this also covers a worker that was killed
    (SIGKILL, out of memory) and so never ran any cleanup of its own."""
    pids = {int(m.group(1)) for f in path.iterdir() if (m := _LIVE_GAUGE_FILE.fullmatch(f.name))}
    for pid in pids - {os.getpid()}:
        if not _alive(pid):
            try:
                mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
            except FileNotFoundError:  # a concurrent scrape in another worker got there first
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the pid exists is checked
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _clear(path: Path, keep_pids: set[int]) -> None:
    for found in path.glob("*.db"):
        pid = found.stem.rpartition("_")[2]
        if not (pid.isdigit() and int(pid) in keep_pids):
            found.unlink(missing_ok=True)
