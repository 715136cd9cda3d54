"""The LanceDB chunks table: incremental sync, indexes, version tags, promotion and rollback.

The table holds one row per chunk (the enrichment columns, a vector, access groups as a list).
``sync`` brings it to exactly the enriched chunks it is given, touching only documents whose
``doc_version`` differs, in one ``merge_insert`` commit (upsert + delete), then ``settle``s it (the
new rows get delta indexes, so BM25 and the scalar indexes cover every row; small fragments are
compacted every ``[index] max_deltas`` writes) and tags the result ``candidate``. Serving reads the
version tagged ``production``; promotion and rollback only move that tag, so they are instant
and a reader never sees a half-written table.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from ingest_platform import faults, state, storage
from ingest_platform.config import IndexSettings
from ingest_platform.heap import release_free_heap
from ingest_platform.schemas import ENRICHED, conform

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
PRODUCTION = "production"
PROMOTED_PREFIX = "promoted-v"
META_MODEL_ID = b"ingest_platform.embedding_model_id"
META_MODEL_SPEC = b"ingest_platform.embedding_model"
FTS_COLUMN = "text"
# Past this many documents in one change, the delete filter is built per batch (SQL size).
_FILTER_BATCH = 2000
# Writes (data fragments, index delta segments) a table collects before its small fragments are
# compacted; the setting ``[index] max_deltas`` owns the default.
MAX_DELTAS = IndexSettings().max_deltas
# A large fragment is left out of compaction until more than this share of its rows is deleted
# (Lance's own default for materializing deletions).
MATERIALIZE_DELETIONS = 0.1


class IndexError_(RuntimeError):
    """The index is missing or inconsistent; the message says what to run."""


def quote(value: str) -> str:
    """A SQL string literal. Doubling quotes is the only escape DataFusion literals need; NULs
    cannot occur in a literal at all, so they are refused rather than silently changed."""
    if "\x00" in value:
        raise ValueError("filter values may not contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def in_list(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def table_schema(dim: int, model_id: str, model_spec: str) -> pa.Schema:
    fields = list(ENRICHED) + [pa.field("vector", pa.list_(pa.float32(), dim))]
    return pa.schema(fields, metadata={META_MODEL_ID: model_id.encode(), META_MODEL_SPEC: model_spec.encode()})


@dataclass
class SyncResult:
    wrote: bool
    version: int
    rows: int
    upserted_docs: int
    deleted_docs: int
    inserted: int
    updated: int
    deleted: int
    rebuilt: bool
    seconds: float


@dataclass
class PromotionEvent:
    action: str  # promote | rollback | revoke
    from_version: int | None
    to_version: int
    at: str
    who: str
    why: str
    # The version asked for, when ``to_version`` was derived from it with revocations applied.
    based_on: int | None = None


@runtime_checkable
class ChunkSource(Protocol):
    """Where the index sync reads the chunks to index from (the indexable shards)."""

    def doc_versions(self) -> dict[str, str]:
        """doc id -> doc_version of every document to index."""

    def rows(self, docs: set[str] | None = None, columns: list[str] | None = None) -> Iterator[tuple[str | None, pa.Table]]:
        """The chunks of ``docs`` (all when None), a table at a time with its shard key (None when
        the source has no shards); ``columns`` to read fewer."""


class TableSource:
    """A ``ChunkSource`` over one in-memory table."""

    def __init__(self, table: pa.Table):
        self.table = conform(table, ENRICHED)

    def doc_versions(self) -> dict[str, str]:
        return dict(zip(self.table.column("doc_id").to_pylist(), self.table.column("doc_version").to_pylist()))

    def rows(self, docs: set[str] | None = None, columns: list[str] | None = None) -> Iterator[tuple[str | None, pa.Table]]:
        t = self.table if docs is None else self.table.filter(pc.is_in(self.table["doc_id"], pa.array(sorted(docs), pa.string())))
        if t.num_rows:
            yield None, (t if columns is None else t.select(columns))


class IndexStore:
    """One LanceDB database folder (or object-store URI) and its chunks table."""

    def __init__(self, uri: str | os.PathLike, table: str = "chunks", home: str | os.PathLike | None = None):
        import lancedb

        self.uri = str(uri)
        self.name = table
        self.db = lancedb.connect(self.uri)
        # Promotion history lives beside the state (append-only JSONL, readable by DuckDB).
        self.home = state.root(home) if home is not None else state.root(self.uri).parent

    # ---- reading ----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.name in self.db.table_names()

    def open(self):
        if not self.exists():
            raise IndexError_("no index has been built yet: run `ingest-platform run` first")
        return self.db.open_table(self.name)

    def model(self, table=None) -> tuple[str, str]:
        """(model id, model spec) recorded with the table: queries must use the same model."""
        md = (table or self.open()).schema.metadata or {}
        return md.get(META_MODEL_ID, b"").decode(), md.get(META_MODEL_SPEC, b"default").decode()

    def doc_versions(self, table=None) -> dict[str, str]:
        table = table or (self.open() if self.exists() else None)
        if table is None:
            return {}
        data = _scan(table, ["doc_id", "doc_version"])
        return dict(zip(data.column("doc_id").to_pylist(), data.column("doc_version").to_pylist()))

    def tags(self) -> dict[str, int]:
        if not self.exists():
            return {}
        return {name: info["version"] for name, info in self.open().tags.list().items()}

    def version_of(self, ref: str | int) -> int:
        if isinstance(ref, int) or str(ref).isdigit():
            return int(ref)
        tags = self.tags()
        if ref not in tags:
            hint = "run `ingest-platform run`" if ref == PRODUCTION else "build an index first"
            raise IndexError_(f"no version is tagged {ref!r}: {hint}")
        return tags[ref]

    def checkout(self, ref: str | int):
        table = self.open()
        table.checkout(self.version_of(ref))
        return table

    # ---- writing ----------------------------------------------------------------------------
    def sync(
        self,
        enriched: pa.Table | ChunkSource,
        vectors_for,
        *,
        dim: int,
        model_id: str,
        model_spec: str,
        vector_index_min_rows: int = 100_000,
        retention: timedelta | None = None,
        max_deltas: int = MAX_DELTAS,
    ) -> SyncResult:
        """Make the table hold exactly ``enriched`` (with vectors from ``vectors_for(hashes, shard)``),
        in one commit. ``enriched`` is a table or a ``ChunkSource`` (the indexable shards): rows are
        streamed into LanceDB one source table at a time, so memory holds a shard, not the corpus."""
        started = time.perf_counter()
        source = enriched if isinstance(enriched, ChunkSource) else TableSource(enriched)
        desired = source.doc_versions()
        schema = table_schema(dim, model_id, model_spec)
        # A table written before the enriched schema gained columns (e.g. the guardrail columns)
        # cannot take the new rows: it is rebuilt like a model change, production stays put.
        rebuild = not self.exists() or self.model()[0] != model_id or not set(schema.names) <= set(self.open().schema.names)
        current = {} if rebuild else self.doc_versions()
        upsert = sorted(d for d, v in desired.items() if current.get(d) != v)
        delete = sorted(d for d in current if d not in desired)
        if not rebuild and not upsert and not delete:
            table = self.open()
            if self._indexes_behind(table):  # a run killed between its write and its settle
                self._ensure_indexes(table, vector_index_min_rows)
                settle(table, retention, max_deltas=max_deltas)
            self._ensure_candidate_tag(table)
            return SyncResult(False, table.version, table.count_rows(), 0, 0, 0, 0, 0, False,
                              time.perf_counter() - started)
        docs = None if rebuild else set(upsert)

        def batches():
            for shard, part in source.rows(docs):
                yield from _with_vectors(part, vectors_for(part.column("text_sha256"), shard), schema).to_batches()

        rows = pa.RecordBatchReader.from_batches(schema, batches())
        if rebuild:
            # A model change rebuilds in a new version of the same table: tags (production) stay
            # on the old version until the new one is checked and promoted.
            table = self.db.create_table(self.name, rows, schema=schema, mode="overwrite" if self.exists() else "create")
            inserted, updated, deleted = table.count_rows(), 0, 0
        else:
            table = self.open()
            new_ids = {c for _, part in source.rows(docs, ["chunk_id"]) for c in part.column("chunk_id").to_pylist()}
            inserted, updated, deleted = self._merge(table, rows, new_ids, upsert, delete)
        faults.point("index:written")
        release_free_heap()  # the write's buffers, before the full-text index builds its own
        self._ensure_indexes(table, vector_index_min_rows)
        release_free_heap()
        # Removed documents' text leaves the data files too, not only the row set.
        settle(table, retention, purge=bool(delete) and not rebuild, max_deltas=max_deltas)
        faults.point("index:optimized")
        self._ensure_candidate_tag(table, force=True)
        return SyncResult(True, table.version, table.count_rows(), len(upsert), len(delete), inserted,
                          updated, deleted, rebuild, time.perf_counter() - started)

    def _merge(self, table, rows: pa.RecordBatchReader, new_ids: set[str], upsert: list[str],
               delete: list[str]) -> tuple[int, int, int]:
        affected = upsert + delete
        # What the merge must delete: rows of affected documents whose chunk id is not re-inserted.
        old_ids: set[str] = set()
        for start in range(0, len(affected), _FILTER_BATCH):
            part = affected[start : start + _FILTER_BATCH]
            old_ids.update(_scan(table, ["chunk_id"], in_list("doc_id", part)).column("chunk_id").to_pylist())
        expect_deleted = len(old_ids - new_ids)
        expect_updated = len(old_ids & new_ids)
        if not new_ids:
            before = table.count_rows()
            table.delete(in_list("doc_id", affected))
            got = (0, 0, before - table.count_rows())
        else:
            result = (
                table.merge_insert("chunk_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(in_list("doc_id", affected))
                .execute(rows)
            )
            got = (result.num_inserted_rows, result.num_updated_rows, result.num_deleted_rows)
        want = (len(new_ids) - expect_updated, expect_updated, expect_deleted)
        if got != want:  # lancedb #3515: a merge can silently match nothing
            raise IndexError_(f"index merge changed (inserted, updated, deleted)={got}, expected {want}")
        return got

    def _ensure_indexes(self, table, vector_index_min_rows: int) -> None:
        existing = {tuple(ix.columns): ix.index_type for ix in table.list_indices()}
        if (FTS_COLUMN,) not in existing:
            table.create_fts_index(
                FTS_COLUMN, with_position=True, stem=True, remove_stop_words=True, language="English",
                lower_case=True, ascii_folding=True, replace=True,
            )
        # No scalar index on chunk_id: a BTREE on the merge key has made merges match 0 rows.
        for column, kind in (("doc_id", "BTREE"), ("source", "BITMAP"), ("format", "BITMAP"),
                             ("language", "BITMAP"), ("access_groups", "LABEL_LIST")):
            if (column,) not in existing:
                table.create_scalar_index(column, index_type=kind)
        if ("vector",) not in existing and table.count_rows() >= vector_index_min_rows:
            table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_PQ")

    def _indexes_behind(self, table) -> bool:
        indexed = {tuple(ix.columns) for ix in table.list_indices()}
        if (FTS_COLUMN,) not in indexed or ("access_groups",) not in indexed:
            return True
        return any(table.index_stats(ix.name).num_unindexed_rows for ix in table.list_indices())

    def _ensure_candidate_tag(self, table, force: bool = False) -> None:
        tags = table.tags.list()
        if CANDIDATE not in tags:
            table.tags.create(CANDIDATE, table.version)
        elif force or tags[CANDIDATE]["version"] != table.version:
            table.tags.update(CANDIDATE, table.version)

    def unindexed_rows(self, ref: str | int | None = None) -> dict[str, int]:
        table = self.checkout(ref) if ref is not None else self.open()
        return {ix.name: table.index_stats(ix.name).num_unindexed_rows for ix in table.list_indices()}

    # ---- promotion --------------------------------------------------------------------------
    @property
    def history_path(self) -> Path:
        return state.promotions(self.home)

    def history(self) -> list[PromotionEvent]:
        if not self.history_path.exists():
            return []
        return [PromotionEvent(**json.loads(line)) for line in self.history_path.read_text().splitlines() if line.strip()]

    def _record(self, event: PromotionEvent) -> None:
        line = json.dumps(asdict(event)) + "\n"
        if storage.is_remote(self.history_path):
            storage.append_text(self.history_path, line)  # the promoter holds the writer lock
            return
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.history_path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def move_production(self, version: int, action: str, *, why: str, who: str | None = None,
                        based_on: int | None = None) -> PromotionEvent:
        """Move the ``production`` tag and record it. Only ``ingest_platform.promotion`` calls
        this: it decides whether the move is allowed."""
        table = self.open()
        tags = table.tags.list()
        old = tags.get(PRODUCTION, {}).get("version")
        # The promoted version keeps a tag of its own so retention never removes a rollback target.
        keep = f"{PROMOTED_PREFIX}{version}"
        if keep not in tags:
            table.tags.create(keep, version)
        # Intent first, then the tag: a crash in between leaves a history entry the tag never
        # followed, which ``production_stack`` discards, rather than a move nobody recorded.
        # Readers watch this file, so they re-resolve the tag on their next query.
        event = PromotionEvent(action, old, version, datetime.now(UTC).isoformat(), who or whoami(), why,
                               based_on if based_on != version else None)
        self._record(event)
        faults.point("promote:recorded")
        if PRODUCTION in tags:
            table.tags.update(PRODUCTION, version)
        else:
            table.tags.create(PRODUCTION, version)
        log.info("%s: production %s -> %s (%s)", action, old, version, why)
        return event

    def production_stack(self) -> list[int]:
        """Production versions in promotion order, rollbacks popped; the last is the current one.
        Entries whose move never happened (a crash between record and tag) are dropped."""
        stack: list[int] = []
        for event in self.history():
            if stack and event.from_version is not None and stack[-1] != event.from_version:
                stack.pop()  # the previous entry was recorded but its tag move never happened
            if event.action == "promote":
                if not stack or stack[-1] != event.to_version:
                    stack.append(event.to_version)
            elif event.action == "revoke":  # the same release, with rows removed or narrowed
                if stack:
                    stack[-1] = event.to_version
                else:
                    stack.append(event.to_version)
            elif event.action == "rollback" and stack:
                stack.pop()
                if stack and event.based_on is not None and stack[-1] == event.based_on:
                    stack[-1] = event.to_version
                elif not stack or stack[-1] != event.to_version:
                    stack.append(event.to_version)
        current = self.tags().get(PRODUCTION)
        while stack and stack[-1] != current:
            stack.pop()
        return stack

    def rollback_target(self) -> int:
        """The production version before the current one that still exists."""
        stack = self.production_stack()
        existing = {v["version"] for v in self.open().list_versions()}
        earlier = [v for v in stack[:-1] if v in existing]
        if not earlier:
            raise IndexError_("nothing to roll back to: no earlier production version is kept")
        return earlier[-1]

    # ---- revocations ------------------------------------------------------------------------
    def served_access(self, version: int) -> dict[str, set[str]]:
        """Per document in ``version``, the union of the groups its chunks are served to."""
        data = _scan(self.checkout(version), ["doc_id", "access_groups"])
        out: dict[str, set[str]] = {}
        for doc_id, groups in zip(data.column("doc_id").to_pylist(), data.column("access_groups").to_pylist()):
            out.setdefault(doc_id, set()).update(groups or [])
        return out

    def derive(self, version: int, *, delete: list[str], narrow: dict[str, list[str]],
               retention: timedelta | None = None) -> int:
        """A new latest version equal to ``version`` minus the rows of ``delete``, with the groups
        of each document in ``narrow`` replaced by the (narrower) list given. Returns its number.

        Only removes rows and narrows groups, so it needs no quality gate; the next ``sync``
        re-applies any candidate changes on top of it (the table's latest version is what
        ``sync`` reconciles against)."""
        # A document left with no group is visible to nobody: removing it is the same, and lance
        # cannot write an empty list literal.
        delete = sorted(set(delete) | {d for d, g in narrow.items() if not g})
        narrow = {d: g for d, g in narrow.items() if g}
        table = self.open()
        table.checkout(version)
        table.restore()
        for start in range(0, len(delete), _FILTER_BATCH):
            table.delete(in_list("doc_id", delete[start : start + _FILTER_BATCH]))
        for doc_id, groups in sorted(narrow.items()):
            table.update(where=f"doc_id = {quote(doc_id)}", values={"access_groups": list(groups)})
        self._ensure_indexes(table, 1 << 62)
        settle(table, retention, purge=True)  # revoked rows leave the data files, not only the row set
        return table.version

    def prune(self, older_than: timedelta) -> None:
        """Remove untagged versions older than ``older_than`` (tagged ones always stay)."""
        prune(self.open(), older_than)

    def cleanup(self, older_than: timedelta, keep_promoted: int = 5, *, delete_unverified: bool = False) -> dict:
        """Drop untagged versions older than ``older_than``; keep the last ``keep_promoted``
        promoted versions tagged (rollback targets) and untag older ones so they can go too.
        Tagged versions and the latest always stay.
        ``delete_unverified`` also deletes files younger than a week (only safe while no writer
        is in the middle of a commit: maintenance holds the home's writer lock)."""
        table = self.open()
        stack = self.production_stack()
        keep = {f"{PROMOTED_PREFIX}{v}" for v in stack[-keep_promoted:]}
        for name in list(table.tags.list()):
            if name.startswith(PROMOTED_PREFIX) and name not in keep:
                table.tags.delete(name)
        before = {v["version"] for v in table.list_versions()}
        prune(table, older_than, delete_unverified=delete_unverified)
        after = {v["version"] for v in table.list_versions()}
        return {"old_versions": len(before - after), "versions_left": len(after)}


def settle(table, retention: timedelta | None, *, purge: bool = False, max_deltas: int = MAX_DELTAS) -> str:
    """After a write: index its rows, compact when due, prune untagged versions older than
    ``retention``. Returns what it did: "indexed", "compacted" or "purged".

    Why not LanceDB's ``table.optimize()`` after every write: it compacts every fragment under a
    million rows, so below that size each run rewrote the whole table and all its indexes, and
    every kept rollback target held such a full copy (state 3.4x the first build's after 100
    one-document runs, ``benchmarks/disk.py``). Here a write's rows get delta index segments and
    its fragment stays as written, so versions share the files of the ones before. Once the table
    has more than ``max_deltas`` fragments or index segments (each segment costs queries time), the
    small fragments are compacted into one and the delta segments merged into one; a large fragment is rewritten only when more than
    ``MATERIALIZE_DELETIONS`` of its rows are deleted (an LSM tree's tiering, in two tiers).
    ``purge`` (documents removed, groups revoked) rewrites every fragment with a deleted row and
    merges every segment, so the removed text leaves the latest version's files, not only its rows.
    """
    ds = table.to_lance()
    counts = {ix.name: table.index_stats(ix.name).num_indices for ix in table.list_indices()}
    fragments = ds.get_fragments()
    if purge or len(fragments) > max_deltas or max(counts.values(), default=1) > max_deltas:
        settled = [] if purge else _settled(fragments)
        # Segments first (this also indexes the new rows): Lance merges only fragments that the
        # same index segments cover. Each index keeps its base segment (over the settled fragments);
        # an index created later than the others has fewer segments, hence one call per index.
        for name, n in counts.items():
            table.to_lance().optimize.optimize_indices(index_names=[name],
                                                       num_indices_to_merge=n - 1 if settled else n)
            table.checkout_latest()
        table.to_lance().optimize.compact_files(
            excluded_fragment_ids=settled, materialize_deletions_threshold=0.0 if purge else MATERIALIZE_DELETIONS)
        did = "purged" if purge else "compacted"
    else:
        ds.optimize.optimize_indices(num_indices_to_merge=0)
        did = "indexed"
    table.checkout_latest()
    if retention is not None:
        prune(table, retention)
    return did


def _settled(fragments) -> list[int]:
    """Fragments compaction leaves alone: the large ones (at least half the largest's rows) with
    at most ``MATERIALIZE_DELETIONS`` of their rows deleted."""
    sizes = {f.fragment_id: f.metadata.physical_rows or 0 for f in fragments}
    largest = max(sizes.values(), default=0)
    out = []
    for f in fragments:
        deleted = f.metadata.deletion_file.num_deleted_rows if f.metadata.deletion_file else 0
        if sizes[f.fragment_id] >= largest / 2 and deleted <= MATERIALIZE_DELETIONS * sizes[f.fragment_id]:
            out.append(f.fragment_id)
    return out


def prune(table, older_than: timedelta, *, delete_unverified: bool = False) -> int:
    """Remove the untagged versions older than ``older_than`` (never a tagged one, never the
    latest) and the files only they use. Returns how many versions went.

    Lance's own prune, without compaction: lancedb's ``optimize()`` would also compact, which
    rewrites the table while rollback targets still hold the old files."""
    stats = table.to_lance().cleanup_old_versions(older_than=older_than, delete_unverified=delete_unverified,
                                                  error_if_tagged_old_versions=False)
    table.checkout_latest()
    return int(stats.old_versions)


def _scan(table, columns: list[str], where: str | None = None) -> pa.Table:
    query = table.search().select(columns)
    if where:
        query = query.where(where)
    return query.limit(None).to_arrow()


SLICE_ROWS = 1024


def read_in_slices(table, columns: list[str], rows: int = SLICE_ROWS) -> Iterator[pa.RecordBatch]:
    """Every row of ``table`` (as checked out), ``rows`` at a time, by row offset.

    For reading a wide column (the vectors) of a whole version. Why not a scan: LanceDB's scan
    reads whole pages of each column ahead of the caller, and reading the vectors of 97k rows that
    way held 180 MB at its peak (43 MB for 10k rows). A take by offsets reads those rows only, so
    the memory is one slice's whatever the table's size (47 MB and 37 MB; ``docs/scaling.md``,
    "Measured")."""
    total = table.count_rows()
    for start in range(0, total, rows):
        part = table.take_offsets(list(range(start, min(total, start + rows)))).select(columns).to_arrow()
        yield from part.combine_chunks().to_batches()


def _with_vectors(rows: pa.Table, vectors: pa.Array, schema: pa.Schema) -> pa.Table:
    rows = conform(rows, ENRICHED)
    vectors = vectors.cast(schema.field("vector").type)
    return pa.Table.from_arrays([*rows.columns, vectors], schema=schema)


def whoami() -> str:
    """The user a promotion history entry names when the caller names nobody."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
