"""The persistent document manifest: what each source holds, by content hash, and what changed.

A scan is compared with the previous manifest. A document whose size and mtime are unchanged keeps
its previous hash without being read (the same bargain git's index makes); anything else is read and
hashed. ``doc_version`` combines the content hash, the metadata that shapes its chunks (groups, title,
sidecar keys) and the pipeline settings, and is what every later stage reconciles on: a stage's
output for a document is current exactly when it carries the document's current ``doc_version``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from ingest_platform import state
from ingest_platform.schemas import MANIFEST
from ingest_platform.sources import RECORD_FORMAT, ScanItem, is_outage, unreadable
from ingest_platform.storage import atomic_write_parquet, read_parquet

log = logging.getLogger(__name__)

STATUSES = ("new", "changed", "unchanged", "deleted", "failed")
LIVE = ("new", "changed", "unchanged")
# In the reason of a document whose parse is to be tried again (a timeout, a dead worker;
# ``[parsing] attempts``), before the time it is due: what the source-change sensor looks for to
# request that run (``retry_note`` writes it, ``retry_due`` reads it).
RETRY_PENDING = "tried again from"


def retry_note(reason: str, attempt: int, attempts: int, due: datetime) -> str:
    """``<reason> (attempt 1 of 3; tried again from 2026-12-06T09:15:02Z)``. The time is rounded up
    to the second, so a run the sensor starts at that time finds the retry due."""
    due = due.astimezone(UTC) + timedelta(microseconds=(1_000_000 - due.microsecond) % 1_000_000)
    return f"{reason} (attempt {attempt} of {attempts}; {RETRY_PENDING} {due:%Y-%m-%dT%H:%M:%SZ})"


def retry_due(reason: str | None) -> datetime | None:
    """When the parse a ``retry_note`` describes is due to be tried again; None for other reasons."""
    found = re.search(rf"{RETRY_PENDING} (\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)", reason or "")
    return datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if found else None


@dataclass
class ScanSummary:
    counts: dict[str, int]
    failures: list[dict]
    scanned_sources: list[str]
    seconds: float = 0.0
    hashed: int = 0  # documents whose bytes had to be read this scan
    errors: list[str] = field(default_factory=list)  # whole sources that could not be listed
    unavailable: dict[str, str] = field(default_factory=dict)  # source name -> why
    changes: list = field(default_factory=list)  # ingest_platform.changes.DocChange, news first

    @property
    def changed(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("new", "changed", "deleted"))


def manifest_path(home: Path) -> Path:
    return state.manifest(home)


def load_manifest(home: Path, columns: list[str] | None = None) -> pa.Table:
    """The manifest (only ``columns`` of it, when given: at 51,830 documents the whole of it is
    24 MB in Arrow and about 100 MB while parquet decodes it)."""
    return read_parquet(manifest_path(home), MANIFEST, columns)


def save_manifest(home: Path, table: pa.Table) -> None:
    atomic_write_parquet(table, manifest_path(home))


def doc_version(content_sha256: str, meta_sha256: str, pipeline_fingerprint: str) -> str:
    return hashlib.sha256(f"{content_sha256}|{meta_sha256}|{pipeline_fingerprint}".encode()).hexdigest()[:32]


def _format_of(item: ScanItem) -> str:
    if item.format_hint:
        return item.format_hint
    from ingest_platform.parsing import detect_format

    return detect_format(item.relpath, b"")


def reconcile(
    previous: pa.Table,
    items: Iterable[ScanItem],
    *,
    pipeline_fingerprint: str,
    now: datetime | None = None,
    unscanned_sources: set[str] = frozenset(),
) -> tuple[pa.Table, int]:
    """The new manifest for a scan, and how many documents had to be read to hash them.

    Documents of a source that could not be listed at all (``unscanned_sources``) keep their
    previous rows: an unreachable bucket must not look like every document was deleted.
    """
    now = now or datetime.now(UTC)
    prev = {row["doc_id"]: row for row in previous.to_pylist()}
    rows: list[dict] = []
    seen: set[str] = set()
    hashed = 0
    for item in items:
        if item.doc_id in seen:  # two sources cannot share a name, so this is a record-level dup
            continue
        seen.add(item.doc_id)
        old = prev.get(item.doc_id)
        row = {
            "doc_id": item.doc_id, "source": item.source, "source_uri": item.source_uri,
            "relpath": item.relpath, "format": _format_of(item), "size": item.size,
            "mtime": item.mtime, "meta_sha256": item.meta_sha256, "title": item.title,
            "access_groups": item.access_groups,
            "metadata_json": json.dumps(item.metadata, sort_keys=True, default=str),
            "first_seen": old["first_seen"] if old and old["status"] != "deleted" else now,
            "last_seen": now, "reason": None,
        }
        if item.error:
            if item.outage and keeps_last_good(old, item):
                rows.append(_last_good(old, now, item.error))
                continue
            row.update(content_sha256=None, doc_version=None, status="failed", reason=item.error)
            row["last_changed"] = old["last_changed"] if old and old.get("reason") == item.error else now
            rows.append(row)
            continue
        content = item.content_sha256
        if content is None:
            reusable = (
                old is not None and old["content_sha256"] and old["size"] == item.size
                and old["mtime"] == item.mtime
            )
            if reusable:
                content = old["content_sha256"]
            else:
                try:
                    content = hashlib.sha256(item.read()).hexdigest()
                    hashed += 1
                except OSError as exc:  # deleted or made unreadable since it was listed
                    if is_outage(exc) and keeps_last_good(old, item):
                        rows.append(_last_good(old, now, unreadable(exc)))
                        continue
                    row.update(content_sha256=None, doc_version=None, status="failed",
                               reason=unreadable(exc), last_changed=now)
                    rows.append(row)
                    continue
        version = doc_version(content, item.meta_sha256, pipeline_fingerprint)
        if old is None or old["status"] == "deleted":
            status = "new"
        elif old["doc_version"] == version:
            # A parse failure is re-marked by the parse stage from its cache, not carried here.
            status = "unchanged"
        else:
            status = "changed"
        row.update(content_sha256=content, doc_version=version, status=status)
        row["last_changed"] = old["last_changed"] if status == "unchanged" else now
        rows.append(row)
    for doc_id, old in prev.items():
        if doc_id in seen:
            continue
        if old["source"] in unscanned_sources:
            # Unknown this time: keep serving what we have, and report it as not changed.
            rows.append({**old, "status": "unchanged" if old["status"] in LIVE else old["status"]})
        elif old["status"] != "deleted":
            # Reported once as deleted, then dropped on the next scan.
            rows.append({**old, "status": "deleted", "reason": None, "last_changed": now})
    rows.sort(key=lambda r: r["doc_id"])
    return pa.Table.from_pylist(rows, schema=MANIFEST), hashed


def keeps_last_good(old: dict | None, item: ScanItem) -> bool:
    """A document the storage failed to read keeps its last good version when it has one and its
    groups did not narrow: the served rows never reach anyone the document no longer allows."""
    return (old is not None and old["status"] in LIVE and bool(old["doc_version"])
            and set(old["access_groups"] or ()) <= set(item.access_groups))


def _last_good(old: dict, now: datetime, reason: str) -> dict:
    """The previous row, still served, with why it could not be refreshed (``summarize``'s ``stale``)."""
    return {**old, "status": "unchanged", "last_seen": now, "reason": _kept(reason)}


def _kept(reason: str) -> str:
    return f"{reason}; its last good version is kept"


def mark_failed(manifest: pa.Table, failures: dict[str, str]) -> pa.Table:
    """Record parse failures (doc_id -> reason) in the manifest; other rows are untouched."""
    if not failures:
        return manifest
    rows = manifest.to_pylist()
    for row in rows:
        reason = failures.get(row["doc_id"])
        if reason is not None:
            row["status"], row["reason"] = "failed", reason
    return pa.Table.from_pylist(rows, schema=MANIFEST)


def mark_stale(manifest: pa.Table, reasons: dict[str, str]) -> pa.Table:
    """Record why live documents (doc_id -> reason) still serve their last good version."""
    if not reasons:
        return manifest
    rows = manifest.to_pylist()
    for row in rows:
        if row["doc_id"] in reasons and row["status"] in LIVE:
            row["reason"] = _kept(reasons[row["doc_id"]])
    return pa.Table.from_pylist(rows, schema=MANIFEST)


def live_documents(manifest: pa.Table) -> pa.Table:
    """Documents whose chunks belong in the index: present and not failed."""
    import pyarrow.compute as pc

    return manifest.filter(pc.is_in(manifest["status"], pa.array(LIVE)))


def summarize(manifest: pa.Table) -> dict:
    rows = manifest.select(["doc_id", "source_uri", "status", "reason"]).to_pylist()
    by_status = Counter(r["status"] for r in rows)
    present = [r for r in rows if r["status"] != "deleted"]
    return {
        "total": len(present),
        "by_status": {s: by_status.get(s, 0) for s in STATUSES},
        "failures": [
            {"doc_id": r["doc_id"], "source_uri": r["source_uri"], "reason": r["reason"]}
            for r in rows
            if r["status"] == "failed"
        ],
        # Live documents whose newest version could not be read (an outage): the last good one is
        # served, and the reason says why.
        "stale": [
            {"doc_id": r["doc_id"], "source_uri": r["source_uri"], "reason": r["reason"]}
            for r in rows
            if r["status"] in LIVE and r["reason"]
        ],
    }


__all__ = [
    "RECORD_FORMAT", "STATUSES", "ScanSummary", "load_manifest", "save_manifest", "reconcile",
    "mark_failed", "mark_stale", "keeps_last_good", "live_documents", "summarize", "manifest_path",
    "RETRY_PENDING", "retry_note", "retry_due",
]
