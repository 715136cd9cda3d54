"""One writer at a time per state folder.

Two runs on one home used to race: both created Dagster's SQLite storage (leaving two schema heads,
broken for good) and both committed to the LanceDB table (one failing on a conflict). Every writer
(``ingest-platform run``, ``promote``, ``rollback``, the pipeline's ``run_all``) takes this lock
first. It is an OS file lock (``flock``) on ``<home>/writer.lock``: released by the kernel when the
holder exits or is killed, so a crashed run never leaves a stale lock behind. The file also says who
holds it, for the message the second writer prints.

The lock is re-entrant within a process (the CLI takes it, then the in-process Dagster run it starts
takes it again). On object storage (a ``home`` URI) there is no shared kernel to arbitrate, so the
platform relies on Dagster's run queue (``max_concurrent_runs: 1``) there; see docs/scaling.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ingest_platform import state
from ingest_platform.errors import HomeLocked

LOCK_NAME = state.LOCK_NAME
_held: dict[str, int] = {}
_held_guard = threading.Lock()


def lock_path(home: str | os.PathLike) -> Path:
    return state.writer_lock(home)


def holder(home: str | os.PathLike) -> dict | None:
    """Who holds (or last held) the lock: pid, host, what, since; None if never taken."""
    try:
        return json.loads(lock_path(home).read_text() or "null")
    except (OSError, ValueError):
        return None


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) for a short read-modify-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def writer_lock(home: str | os.PathLike, *, what: str = "run", wait_s: float = 0.0) -> Iterator[None]:
    """Hold the writer lock on ``home`` for the block.

    Parameters
    ----------
    home:
        The state folder (created if missing).
    what:
        What the holder is doing, shown to a writer that has to wait ("run", "promote", ...).
    wait_s:
        How long to wait for another holder; 0 fails at once.

    Raises
    ------
    HomeLocked
        Another process holds the lock past ``wait_s``; the message names it.

    Example
    -------
    >>> with writer_lock(settings.home, what="run"):
    ...     pipeline.run_all(settings)
    """
    path = lock_path(home)
    key = str(path.resolve()) if path.parent.exists() else str(path)
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    fh = open(path, "a+")
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    other = holder(home) or {}
                    raise HomeLocked(
                        f"{home} is locked by another writer ({other.get('what', 'unknown')}, pid "
                        f"{other.get('pid', '?')} on {other.get('host', '?')} since {other.get('since', '?')}): "
                        "wait for it to finish, or pass --wait SECONDS") from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                             "since": datetime.now(UTC).isoformat(timespec="seconds")}))
        fh.flush()
        with _held_guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
