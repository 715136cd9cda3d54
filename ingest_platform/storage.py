"""Crash-safe files under the state directory, on a local disk or any fsspec filesystem.

Locally every file is written to a temporary name and renamed into place, so a killed run leaves
either the old file or the new one, never half of one. On object storage a single PUT already is
all-or-nothing, so the object is written in place. Caches are append-only "segment" folders: each
run adds one Parquet file, and readers see only complete segments. Paths come from
``ingest_platform.state``: ``pathlib.Path`` locally, ``upath.UPath`` for a URI.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ingest_platform.schemas import conform

# A temporary file of another host's writer is taken for a killed writer's after this long: no
# segment takes an hour to write.
STALE_TMP_S = 3600.0
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
_TMP_NAME = re.compile(r"\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")


def _tmp_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: hidden from readers, and naming
    its writer (host and process), so a cache opened meanwhile can tell it from a leftover."""
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _abandoned(tmp: Path) -> bool:
    """Whether a temporary file's writer is gone: a process of this host that no longer runs, or
    any writer (one elsewhere, or a process id since reused) that has not finished in
    ``STALE_TMP_S``."""
    m = _TMP_NAME.search(tmp.name)
    if m and m["host"] == _HOST:
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
    return tmp.stat().st_mtime < time.time() - STALE_TMP_S


def is_remote(path) -> bool:
    """Whether ``path`` lives on an fsspec filesystem other than the local one."""
    protocol = getattr(path, "protocol", "")
    return bool(protocol) and protocol not in ("file", "local")


def _fs(path):
    """``(filesystem, path string)`` for pyarrow: None and the local path, or the fsspec ones."""
    return (path.fs, path.path) if is_remote(path) else (None, str(path))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    if is_remote(path):
        path.write_bytes(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    if is_remote(path):
        fs, where = _fs(path)
        pq.write_table(table, where, filesystem=fs)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    """``text`` as UTF-8 at ``path``, whole or not at all (locally: written aside, then renamed)."""
    if is_remote(path):
        path.write_text(text, encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to a log file (JSONL). Locally an ``O_APPEND`` write; on object storage,
    which has no append, the object is rewritten: callers hold the home's writer lock (these logs
    have one writer at a time; query traces, which have many, use files of their own)."""
    if is_remote(path):
        old = path.read_bytes() if path.exists() else b""
        path.write_bytes(old + text.encode())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(text)


def fingerprint(path: Path) -> str:
    """Size and modification stamp of a file (its ETag on object storage): what changes when it is
    rewritten."""
    if is_remote(path):
        info = path.fs.info(path.path)
        return f"{info.get('size')}:{info.get('ETag') or info.get('LastModified') or info.get('mtime')}"
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def parquet_rows(path: Path) -> int:
    fs, where = _fs(path)
    if fs is None:
        return pq.ParquetFile(where).metadata.num_rows
    with fs.open(where, "rb") as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    fs, where = _fs(path)
    return pq.read_table(where, columns=columns, filesystem=fs)


def read_parquet(path: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """The table at ``path`` conformed to ``schema`` (only ``columns`` of it, when given), or an
    empty one when it does not exist yet. Reading only the columns a caller needs keeps a large
    file's other columns out of memory."""
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if not path.exists():
        return schema.empty_table()
    fs, where = _fs(path)
    present = set(pq.read_schema(where, filesystem=fs).names) if columns is not None else None
    return conform(read_table(path, None if columns is None else [c for c in columns if c in present]), schema)


class SegmentStore:
    """An append-only keyed cache: a folder of Parquet segments sharing one schema and key column.

    A segment may carry a tag (``segment-<tag>-<id>.parquet``): the parse cache tags each segment
    with the shard of the documents it was parsed for, so a shard's chunk step reads its own
    segments, not the whole cache (other segments are read only for keys its own lack, content
    shared with a document of another shard)."""

    def __init__(self, folder: Path, schema: pa.Schema, key: str):
        self.folder, self.schema, self.key = folder, schema, key
        if not is_remote(folder):
            folder.mkdir(parents=True, exist_ok=True)
            # Left by a killed writer (never visible to readers); not a live writer's, in a parallel
            # step, about to be renamed into place.
            for tmp in folder.glob(".*.tmp"):
                try:
                    if _abandoned(tmp):
                        tmp.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass  # renamed into place meanwhile

    def _segments(self, tag: str | None = None) -> list[str]:
        pattern = f"segment-{tag}-*.parquet" if tag is not None else "segment-*.parquet"
        if is_remote(self.folder):
            return sorted(p.path for p in self.folder.glob(pattern))
        return sorted(str(p) for p in self.folder.glob(pattern))

    @staticmethod
    def _tag_of(file: str) -> str | None:
        parts = file.rsplit("/", 1)[-1][len("segment-"):-len(".parquet")].split("-")
        return parts[0] if len(parts) == 2 else None

    def _dataset(self, files: list[str] | None = None) -> ds.Dataset | None:
        files = self._segments() if files is None else files
        fs = self.folder.fs if is_remote(self.folder) else None
        return ds.dataset(files, schema=self.schema, format="parquet", filesystem=fs) if files else None

    def keys(self) -> set[str]:
        data = self._dataset()
        if data is None:
            return set()
        return set(data.to_table(columns=[self.key]).column(self.key).to_pylist())

    def read(self, keys: Iterable[str], columns: list[str] | None = None, tag: str | None = None) -> pa.Table:
        """The rows of ``keys``; with ``tag``, looked for in that tag's segments first."""
        wanted = sorted(set(keys))
        empty = self.schema.empty_table() if columns is None else self.schema.empty_table().select(columns)
        if not wanted:
            return empty
        parts = []
        files = self._segments()
        own = self._segments(tag) if tag is not None else []
        if own:
            read = None if columns is None else list(dict.fromkeys([*columns, self.key]))
            found = self._dataset(own).to_table(columns=read, filter=pc.field(self.key).isin(pa.array(wanted, pa.string())))
            have = set(found[self.key].to_pylist())
            parts.append(found if columns is None else found.select(columns))
            wanted = [k for k in wanted if k not in have]
            files = sorted(set(files) - set(own))
        data = self._dataset(files) if wanted else None
        if data is not None:
            parts.append(data.to_table(columns=columns, filter=pc.field(self.key).isin(pa.array(wanted, pa.string()))))
        return pa.concat_tables(parts) if parts else empty

    def append(self, table: pa.Table, tag: str | None = None) -> None:
        if table.num_rows == 0:
            return
        name = f"segment-{tag}-{uuid.uuid4().hex}.parquet" if tag is not None else f"segment-{uuid.uuid4().hex}.parquet"
        atomic_write_parquet(conform(table, self.schema), self.folder / name)

    def compact(self, live: set[str] | None = None) -> int:
        """Rewrite the segments of each tag as one, keeping one row group per key in ``live`` (all
        when None); one tag's segments in memory at a time.

        Returns the number of segments folded. A new segment is in place before old ones go.
        """
        groups: dict[str | None, list[str]] = {}
        for f in self._segments():
            groups.setdefault(self._tag_of(f), []).append(f)
        folded = 0
        wanted = pa.array(sorted(live), pa.string()) if live is not None else None
        for tag, files in groups.items():
            if len(files) < 2 and live is None:
                continue
            table = self._dataset(files).to_table()
            if wanted is not None:
                table = table.filter(pc.field(self.key).isin(wanted))
            self.append(table, tag=tag)
            for f in files:
                if is_remote(self.folder):
                    self.folder.fs.rm(f)
                else:
                    os.unlink(f)
            folded += len(files)
        return folded
