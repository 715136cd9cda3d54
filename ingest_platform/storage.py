"""Crash-safe files under the state directory, on a local disk or any fsspec filesystem.

Locally every file is written to a temporary name and renamed into place, so a killed run leaves
either the old file or the new one, never half of one. On object storage a single PUT already is
all-or-nothing, so the object is written in place. Caches are append-only "segment" folders: each
run adds one Parquet file, and readers see only complete segments. Paths come from
``ingest_platform.state``: ``pathlib.Path`` locally, ``upath.UPath`` for a URI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ingest_platform.schemas import conform


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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    if is_remote(path):
        path.write_text(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
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


def read_parquet(path: Path, schema: pa.Schema) -> pa.Table:
    """The table at ``path`` conformed to ``schema``, or an empty one when it does not exist yet."""
    if not path.exists():
        return schema.empty_table()
    return conform(read_table(path), schema)


class SegmentStore:
    """An append-only keyed cache: a folder of Parquet segments sharing one schema and key column."""

    def __init__(self, folder: Path, schema: pa.Schema, key: str):
        self.folder, self.schema, self.key = folder, schema, key
        if not is_remote(folder):
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".*.tmp"):  # left by a killed writer; never visible to readers
                stale.unlink(missing_ok=True)

    def _segments(self) -> list[str]:
        if is_remote(self.folder):
            return sorted(p.path for p in self.folder.glob("segment-*.parquet"))
        return sorted(str(p) for p in self.folder.glob("segment-*.parquet"))

    def _dataset(self) -> ds.Dataset | None:
        files = self._segments()
        fs = self.folder.fs if is_remote(self.folder) else None
        return ds.dataset(files, schema=self.schema, format="parquet", filesystem=fs) if files else None

    def keys(self) -> set[str]:
        data = self._dataset()
        if data is None:
            return set()
        return set(data.to_table(columns=[self.key]).column(self.key).to_pylist())

    def read(self, keys: Iterable[str], columns: list[str] | None = None) -> pa.Table:
        data = self._dataset()
        wanted = pa.array(sorted(set(keys)), pa.string())
        if data is None or len(wanted) == 0:
            return self.schema.empty_table() if columns is None else self.schema.empty_table().select(columns)
        table = data.to_table(columns=columns, filter=pc.field(self.key).isin(wanted))
        return table

    def append(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        name = f"segment-{uuid.uuid4().hex}.parquet"
        atomic_write_parquet(conform(table, self.schema), self.folder / name)

    def compact(self, live: set[str] | None = None) -> int:
        """Rewrite all segments as one, keeping one row group per key in ``live`` (all when None).

        Returns the number of segments folded. The new segment is in place before old ones go.
        """
        files = self._segments()
        if len(files) < 2 and live is None:
            return 0
        data = self._dataset()
        table = data.to_table()
        if live is not None:
            table = table.filter(pc.field(self.key).isin(pa.array(sorted(live), pa.string())))
        self.append(table)
        for f in files:
            if is_remote(self.folder):
                self.folder.fs.rm(f)
            else:
                os.unlink(f)
        return len(files)
