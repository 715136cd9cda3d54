"""Bounded disk: what the state no longer needs goes, on a schedule, and the report says how much.

Every run adds to the state: a LanceDB version (its data, deletion and index files), a segment in
the parse and embedding caches, a gate record and an eval report per candidate, trace files per
day of queries. None of it is wrong to keep for a while (rollback targets, readers still pinned to
a version, a cached parse that a reverted edit needs again), so the pipeline itself never deletes
it; ``maintain`` does, under the home's writer lock:

- **Index versions**: tags stay (``production``, ``candidate`` and the last ``[index]
  keep_promoted`` rollback targets ``promoted-vN``; older rollback tags are removed first), and so
  does the latest version; every untagged version goes, with the files only it used (the writer
  lock guarantees no commit is in flight, so files younger than Lance's one-week safety margin may
  go as well). Pruning never compacts: compaction would rewrite files the kept tags still hold.
- **Caches**: the parse cache keeps the elements and failures of content some live document has;
  the embedding cache keeps the vectors of the texts the index holds now; each is compacted into
  one segment (the new segment is in place before the old ones go).
- **Records per version**: gate records and eval reports of versions that no longer exist.
- **Traces**: query trace files older than ``[monitoring] trace_retention_days``.

The ``maintenance`` asset runs this daily (``[maintenance] cron``) and shows the bytes freed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest_platform import state
from ingest_platform.config import Settings

log = logging.getLogger(__name__)


@dataclass
class MaintenanceReport:
    bytes_before: int = 0
    bytes_after: int = 0
    index_versions_removed: int = 0
    index_versions_left: int = 0
    rollback_tags_removed: list[str] = field(default_factory=list)
    segments_compacted: dict[str, int] = field(default_factory=dict)  # cache -> segments folded
    cache_rows_dropped: dict[str, int] = field(default_factory=dict)  # cache -> rows no longer needed
    version_records_removed: int = 0  # gate records and eval reports of versions that are gone
    trace_files_removed: int = 0
    seconds: float = 0.0

    @property
    def bytes_freed(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)

    def to_dict(self) -> dict:
        return {**asdict(self), "bytes_freed": self.bytes_freed}


def disk_usage(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when it does not exist)."""
    from ingest_platform.storage import is_remote

    if is_remote(path):
        return int(path.fs.du(path.path)) if path.exists() else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def maintain(settings: Settings, *, now: datetime | None = None) -> MaintenanceReport:
    """Free what the state no longer needs (module docstring); returns what was done."""
    from ingest_platform.locking import writer_lock

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    report = MaintenanceReport(bytes_before=disk_usage(settings.state))
    with writer_lock(settings.home, what="maintenance"):
        _index(settings, report)
        _caches(settings, report)
        _version_records(settings, report)
        _traces(settings, report, now)
    report.bytes_after = disk_usage(settings.state)
    report.seconds = time.perf_counter() - started
    log.info("maintenance freed %d bytes: %s", report.bytes_freed, report.to_dict())
    return report


def _index(settings: Settings, report: MaintenanceReport) -> None:
    from ingest_platform.index import PROMOTED_PREFIX
    from ingest_platform.pipeline import index_store

    store = index_store(settings)
    if not store.exists():
        return
    before = set(store.open().tags.list())
    result = store.cleanup(older_than=timedelta(0), keep_promoted=settings.index.keep_promoted, delete_unverified=True)
    report.index_versions_removed = result["old_versions"]
    report.index_versions_left = result["versions_left"]
    report.rollback_tags_removed = sorted(n for n in before - set(store.open().tags.list()) if n.startswith(PROMOTED_PREFIX))


def _caches(settings: Settings, report: MaintenanceReport) -> None:
    from ingest_platform import manifest as mf
    from ingest_platform import pipeline
    from ingest_platform.embedding import EmbeddingCache
    from ingest_platform.models import model_dim, model_id

    manifest = mf.load_manifest(settings.state)
    live_content = {h for h, st in zip(manifest["content_sha256"].to_pylist(), manifest["status"].to_pylist())
                    if h and st != "deleted"}
    fp, pv = pipeline.parse_fingerprint(settings), settings.parser_version()
    stores = {  # rows of another parser (or parse settings) than the current one are dropped too
        "parsed_elements": (pipeline.parsed_store(settings), {pipeline.parse_key(h, pv) for h in live_content}),
        "parse_failures": (pipeline.failure_store(settings), {pipeline.parse_key(h, fp) for h in live_content}),
        "parse_attempts": (pipeline.attempt_store(settings), {pipeline.parse_key(h, fp) for h in live_content}),
    }
    if pipeline.indexable_table(settings).written():
        indexed = set(pipeline.load_enriched(settings, ["text_sha256"])["text_sha256"].to_pylist())
        cache = EmbeddingCache(settings.state, model_id(settings.embedding.model), model_dim(settings.embedding.model))
        stores["embeddings"] = (cache.store, indexed)
    for name, (store, live) in stores.items():
        keys = store.keys()
        report.cache_rows_dropped[name] = len(keys - live)
        report.segments_compacted[name] = store.compact(live=keys & live) if keys else 0


def _version_records(settings: Settings, report: MaintenanceReport) -> None:
    from ingest_platform.pipeline import index_store

    store = index_store(settings)
    if not store.exists():
        return
    existing = {v["version"] for v in store.open().list_versions()}
    for path in state.gates(settings.state).glob("v*"):  # a folder of verdicts per version
        if path.name[1:].isdigit() and int(path.name[1:]) not in existing:
            for record in path.glob("*.json"):
                record.unlink()
            try:
                path.rmdir()
            except OSError:  # object storage has no folders to remove
                pass
            report.version_records_removed += 1
    for path in state.eval_report(settings.state, 0).parent.glob("v*.json"):
        if path.stem[1:].isdigit() and int(path.stem[1:]) not in existing:
            path.unlink(missing_ok=True)
            report.version_records_removed += 1


def _traces(settings: Settings, report: MaintenanceReport, now: datetime) -> None:
    oldest = (now - timedelta(days=settings.monitoring.trace_retention_days)).strftime("%Y%m%d")
    for path in state.traces(settings.state).glob("queries-*.jsonl"):
        stamp = path.stem.split("-", 1)[1][:8]
        if stamp.isdigit() and stamp < oldest:
            path.unlink(missing_ok=True)
            report.trace_files_removed += 1


__all__ = ["MaintenanceReport", "maintain", "disk_usage"]
