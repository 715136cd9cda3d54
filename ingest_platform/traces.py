"""Query traces: one JSON line per query under ``<home>/traces/queries-YYYYMMDD.jsonl``.

The trace is the record the production loop learns from: feedback points at a trace id, the review
queue and the monitoring checks read the trace files, and judged traces become golden-set entries.
Files are append-only JSON lines (one ``O_APPEND`` write per line, so lines written by several
processes never interleave) that DuckDB reads with ``read_json_auto`` as well as this module does.

A trace id carries the UTC date of its query (``YYYYMMDD-<20 hex digits>``), so finding a trace
reads one day's file, not the whole history.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest_platform import state, storage

log = logging.getLogger(__name__)

TRACE_ID = re.compile(r"^(\d{8})-[0-9a-f]{20}$")


class TraceError(ValueError):
    """A trace id that is malformed or names no recorded query."""


CLOCK_ENV = "INGEST_PLATFORM_NOW"


def now() -> datetime:
    """The clock of the production loop's reports: ``INGEST_PLATFORM_NOW`` (ISO 8601) when set, for
    tests and for replaying a past day, else the current UTC time. Traces are stamped with real time."""
    value = os.environ.get(CLOCK_ENV)
    if not value:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def new_trace_id(at: datetime | None = None) -> str:
    """A fresh, unique trace id whose first 8 characters are the UTC date (``YYYYMMDD``)."""
    at = at or datetime.now(UTC)
    return f"{at:%Y%m%d}-{uuid.uuid4().hex[:20]}"


def folder(home: str | os.PathLike) -> Path:
    return state.traces(home)


def file_for(home: str | os.PathLike, day: date | datetime | str) -> Path:
    """The trace file of one UTC day (``day`` may be a date or a ``YYYYMMDD`` string)."""
    stamp = day if isinstance(day, str) else f"{day:%Y%m%d}"
    return state.trace_file(home, stamp)


def append(home: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` to the file of its trace id's day (of today when it has no id).

    Locally one ``O_APPEND`` write per line: lines from several processes never interleave. On
    object storage, which has no append, each process buffers its lines and writes them as an
    object of their own (``queries-<day>-<writer>-<n>.jsonl``) at most every ``FLUSH_S`` seconds,
    so replicas never rewrite each other's traces and a query never waits for a PUT."""
    trace_id = record.get("trace_id") or ""
    match = TRACE_ID.match(trace_id)
    day = match.group(1) if match else f"{datetime.now(UTC):%Y%m%d}"
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    if storage.is_remote(state.traces(home)):
        _remote_writer(home).add(day, line)
        return
    path = file_for(home, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


FLUSH_S = 1.0
_WRITERS: dict[str, "_RemoteWriter"] = {}
_WRITERS_LOCK = threading.Lock()


class _RemoteWriter:
    """This process's buffered trace lines for one remote home, flushed by a daemon thread."""

    def __init__(self, home) -> None:
        self.home = home
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.pending: dict[str, list[str]] = {}
        self.seq = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, name="trace-flush", daemon=True).start()
        atexit.register(self.flush)

    def add(self, day: str, line: str) -> None:
        with self.lock:
            self.pending.setdefault(day, []).append(line)

    def lines(self, day: str) -> list[str]:
        with self.lock:
            return list(self.pending.get(day, []))

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        for day, lines in pending.items():
            self.seq += 1
            path = state.traces(self.home) / f"queries-{day}-{self.name}-{self.seq:06d}.jsonl"
            storage.atomic_write_text("".join(lines), path)

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed flush is retried with the next lines
                log.warning("could not write query traces", exc_info=True)


def _remote_writer(home) -> _RemoteWriter:
    key = state._text(home)
    with _WRITERS_LOCK:
        if key not in _WRITERS:
            _WRITERS[key] = _RemoteWriter(home)
        return _WRITERS[key]


def flush(home: str | os.PathLike) -> None:
    """Write out this process's buffered traces for ``home`` now (object storage only)."""
    writer = _WRITERS.get(state._text(home))
    if writer is not None:
        writer.flush()


def _day_files(home, day: str) -> list[Path]:
    """The trace files of one UTC day: the day's file, and the per-writer parts on object storage."""
    return sorted(folder(home).glob(f"queries-{day}*.jsonl"))


def _lines(path: Path) -> Iterator[dict]:
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write: skipped, never fatal to a reader
            if isinstance(record, dict):
                yield record


def find(home: str | os.PathLike, trace_id: str) -> dict:
    """The trace of ``trace_id``; ``TraceError`` with a one-line reason when there is none."""
    if not isinstance(trace_id, str):
        raise TraceError(f"trace id must be a string, not {type(trace_id).__name__}")
    match = TRACE_ID.match(trace_id.strip())
    if not match:
        raise TraceError(f"{trace_id!r} is not a trace id (expected YYYYMMDD-<20 hex digits>, "
                         "as in a search result's trace_id)")
    trace_id = trace_id.strip()
    writer = _WRITERS.get(state._text(home))
    pending = [json.loads(line) for line in writer.lines(match.group(1))] if writer is not None else []
    for record in itertools.chain(pending, *(_lines(p) for p in _day_files(home, match.group(1)))):
        if record.get("trace_id") == trace_id:
            return record
    raise TraceError(f"unknown trace id {trace_id!r}: no query with this id in {folder(home)} "
                     "(was tracing off, or is this another home?)")


def at_of(record: dict) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(record["at"]))
    except (KeyError, ValueError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def read(home: str | os.PathLike, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    """Every trace with ``start <= at < end`` (either bound may be None), oldest file first.

    Only the day files that can hold such traces are opened."""
    root = folder(home)
    if not root.exists():
        return []
    out: list[dict] = []
    first = (start - timedelta(days=1)).strftime("%Y%m%d") if start else None
    last = (end + timedelta(days=1)).strftime("%Y%m%d") if end else None
    for path in sorted(root.glob("queries-*.jsonl")):
        stamp = path.stem.removeprefix("queries-")[:8]
        if (first and stamp < first) or (last and stamp > last):
            continue
        for record in _lines(path):
            at = at_of(record)
            if at is None or (start and at < start) or (end and at >= end):
                continue
            out.append(record)
    return out


__all__ = ["TraceError", "now", "new_trace_id", "find", "read", "append", "file_for", "folder", "at_of"]
