"""Shards: the unit of work from parse to embed.

A document's shard is a stable hash of its id into ``[scale] shards`` buckets, so a document never
moves between shards while it lives and a changed document touches exactly one. Why hash buckets
rather than batches of new documents: a bucket is the same set of documents on every run, so an
incremental run rewrites only the buckets its changes fall into, and every stage can be run (and
retried) for one bucket on its own, in any process. Memory then follows the bucket: a corpus ten
times larger with ten times the buckets holds the same amount per stage.

Each stage's output is one Parquet file per shard in a folder (``ShardedTable``); a folder records
the shard count it was written with. Only the stage that writes a folder lays it out afresh for
another count (the caches keyed by content, parse and embeddings, carry over, so re-sharding
re-chunks but never re-parses or re-embeds); any other process reads the folder as it was written,
so a check or notebook that lacks the run's shard setting deletes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ingest_platform.errors import LayoutMismatch
from ingest_platform.schemas import conform
from ingest_platform.storage import atomic_write_parquet, atomic_write_text, parquet_rows, read_table

LAYOUT_FILE = "_layout.json"


def shard_of(doc_id: str, shards: int) -> str:
    """The shard key of ``doc_id`` (``"000"``..): the same on every machine and every run."""
    return f"{int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % shards:03d}"


def shard_keys(shards: int) -> list[str]:
    return [f"{i:03d}" for i in range(shards)]


def shard_column(doc_ids: pa.Array | pa.ChunkedArray | list[str], shards: int) -> list[str]:
    values = doc_ids.to_pylist() if hasattr(doc_ids, "to_pylist") else list(doc_ids)
    return [shard_of(d, shards) for d in values]


class ShardedTable:
    """A stage's output: ``<folder>/<shard>.parquet``, all with one schema.

    Parameters
    ----------
    folder, schema:
        Where the shards live and what their rows are.
    shards:
        The configured shard count (``[scale] shards``).
    write:
        Opened by the stage that writes the folder: a folder written with another count starts
        afresh in ``shards``. Otherwise (a reader) nothing on disk changes, and ``self.shards`` is
        the count the folder was written with, so ``shard_of(doc, table.shards)`` finds a document.

    Example
    -------
    >>> chunks = ShardedTable(folder, CHUNKS, 16)            # a reader: deletes nothing
    >>> chunks.read(shard_of("doc-1", chunks.shards))
    """

    def __init__(self, folder: Path, schema: pa.Schema, shards: int, *, write: bool = False):
        self.folder, self.schema, self.shards = folder, schema, shards
        marker = folder / LAYOUT_FILE
        written = json.loads(marker.read_text()).get("shards") if marker.exists() else None
        if not write:
            self.shards = written or shards
        elif written != shards:
            for old in folder.glob("*.parquet") if written else ():  # written with another shard count
                old.unlink()
            atomic_write_text(json.dumps({"shards": shards}), marker)

    def require(self, shards: int) -> ShardedTable:
        """``self``, if laid out in ``shards``; else :class:`LayoutMismatch` (a stage reading its
        upstream by the run's shard keys)."""
        if self.shards != shards:
            raise LayoutMismatch(
                f"{self.folder} holds {self.shards} shards and this run {shards}: run the stages before "
                f"it first (a whole run lays every folder out again)")
        return self

    def path(self, shard: str) -> Path:
        return self.folder / f"{shard}.parquet"

    def exists(self, shard: str) -> bool:
        return self.path(shard).exists()

    def written(self) -> list[str]:
        """Shards that have a file."""
        return sorted(p.stem for p in self.folder.glob("*.parquet") if not p.name.startswith("."))

    def read(self, shard: str, columns: list[str] | None = None) -> pa.Table:
        path = self.path(shard)
        if not path.exists():
            empty = self.schema.empty_table()
            return empty if columns is None else empty.select(columns)
        table = read_table(path, columns=columns)
        return conform(table, self.schema) if columns is None else table

    def write(self, shard: str, table: pa.Table) -> None:
        """Replace the shard's file (atomically); an empty table removes it."""
        if table.num_rows == 0:
            self.path(shard).unlink(missing_ok=True)
            return
        atomic_write_parquet(conform(table, self.schema), self.path(shard))

    def iter(self, columns: list[str] | None = None, shards: Iterable[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        for shard in (self.written() if shards is None else sorted(shards)):
            yield shard, self.read(shard, columns)

    def read_all(self, columns: list[str] | None = None) -> pa.Table:
        """Every shard in one table: for small corpora, reports and tests, never a stage's hot path."""
        parts = [t for _, t in self.iter(columns)]
        if not parts:
            empty = self.schema.empty_table()
            return empty if columns is None else empty.select(columns)
        return pa.concat_tables(parts)

    def doc_versions(self, shard: str) -> dict[str, str]:
        t = self.read(shard, ["doc_id", "doc_version"])
        return dict(zip(t["doc_id"].to_pylist(), t["doc_version"].to_pylist()))

    def rows(self, shard: str) -> int:
        return parquet_rows(self.path(shard))


def split_by_shard(table: pa.Table, shards: int) -> dict[str, pa.Table]:
    """``table``'s rows grouped by the shard of their ``doc_id``."""
    if table.num_rows == 0:
        return {}
    keys = pa.array(shard_column(table["doc_id"], shards), pa.string())
    return {k: table.filter(pc.equal(keys, k)) for k in sorted(set(keys.to_pylist()))}


__all__ = ["shard_of", "shard_keys", "shard_column", "ShardedTable", "split_by_shard"]
