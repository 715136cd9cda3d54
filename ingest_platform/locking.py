"""One writer at a time per state folder.

Two runs on one home used to race: both created Dagster's SQLite storage (leaving two schema heads,
broken for good) and both committed to the LanceDB table (one failing on a conflict). Every writer
(``ingest-platform run``, ``promote``, ``rollback``, the pipeline's ``run_all``) takes this lock
first. It is an OS file lock (``flock``) on ``<home>/writer.lock``: released by the kernel when the
holder exits or is killed, so a crashed run never leaves a stale lock behind. The file also says who
holds it, for the message the second writer prints.

The lock is re-entrant within a process (the CLI takes it, then the in-process Dagster run it starts
takes it again). On object storage (a ``home`` URI) there is no kernel to arbitrate: the lock is an
object created only if absent (a conditional PUT, ``If-None-Match: *``), holding its owner and an
expiry that the holder renews every ``LEASE_S / 3`` seconds; a holder that died stops renewing,
and once the expiry has passed the next writer takes the lock over.
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

from ingest_platform import state, storage
from ingest_platform.errors import HomeLocked

LEASE_S = 60.0  # a remote lock's holder renews it; a lease this old without renewal is dead

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
    if storage.is_remote(path):
        with _reentrant(str(path)) as first:
            if not first:
                yield
                return
            with _lease(path, home, what, wait_s):
                yield
        return
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
                             "since": datetime.now(UTC).isoformat(timespec="milliseconds")}))
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


@contextmanager
def _reentrant(key: str) -> Iterator[bool]:
    """Count this process's holds of ``key``; yields whether this is the first."""
    with _held_guard:
        first = not _held.get(key)
        _held[key] = _held.get(key, 0) + 1
    try:
        yield first
    finally:
        with _held_guard:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]


@contextmanager
def _lease(path, home, what: str, wait_s: float) -> Iterator[None]:
    """The writer lock on object storage: an object created only if absent, renewed while held."""
    import uuid

    fs, key = path.fs, path.path
    token = uuid.uuid4().hex

    def body() -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what, "token": token,
                           "since": since, "expires": time.time() + LEASE_S}).encode()

    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fs.pipe_file(key, body(), mode="create")
            break
        except FileExistsError:
            other = holder(home) or {}
            if other.get("expires", float("inf")) < time.time():  # its holder stopped renewing
                fs.rm_file(key)
                continue
            if time.monotonic() >= deadline:
                raise HomeLocked(
                    f"{home} is locked by another writer ({other.get('what', 'unknown')}, pid "
                    f"{other.get('pid', '?')} on {other.get('host', '?')} since {other.get('since', '?')}): "
                    "wait for it to finish, or pass --wait SECONDS") from None
            time.sleep(0.5)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 3):
            current = holder(home) or {}
            if current.get("token") != token:
                return  # taken over (we were presumed dead): nothing of ours to renew
            fs.pipe_file(key, body())

    renewer = threading.Thread(target=renew, name="writer-lock-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        if (holder(home) or {}).get("token") == token:
            fs.rm_file(key)
