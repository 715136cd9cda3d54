"""What a run changed, per document, in words a person reads: which documents are new, changed,
deleted or newly failed, how their size and content hash moved, and how many of their chunks the
index gained, lost or kept.

The manifest already says *that* something changed (``status``); these lists say *what*, so the
Dagster UI (asset metadata, run tags) and the CLI can name the documents instead of counting them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import pyarrow as pa

# Statuses that are news in a run; ``unchanged`` is not.
CHANGE_STATUSES = ("new", "changed", "deleted", "failed")


@dataclass(frozen=True)
class DocChange:
    """One document that a run changed. ``None`` means "not applicable" (a deleted document has no
    size after; a manifest change has no chunk counts)."""

    document: str
    status: str  # new / changed / deleted / failed
    size_bytes_before: int | None = None
    size_bytes_after: int | None = None
    hash_before: str | None = None  # first 12 hex digits of the content SHA-256
    hash_after: str | None = None
    chunks_added: int | None = None
    chunks_removed: int | None = None
    chunks_kept: int | None = None
    reason: str | None = None  # why a failed document failed; what changed of a changed one

    def to_dict(self) -> dict:
        return asdict(self)


def _short(sha: str | None) -> str | None:
    return sha[:12] if sha else None


def manifest_changes(previous: pa.Table, current: pa.Table) -> list[DocChange]:
    """The documents whose manifest row is news: new, changed, deleted, or failed where the previous
    manifest did not have them failed for the same reason. Ordered: failed first, then by status
    and name, so the first few (which go into run tags) are the ones a person most needs."""
    columns = ["doc_id", "status", "size", "content_sha256", "meta_sha256", "reason"]
    before = {r["doc_id"]: r for r in previous.select(columns).to_pylist()}
    out: list[DocChange] = []
    for row in current.select(columns).to_pylist():
        status, old = row["status"], before.get(row["doc_id"])
        if status not in CHANGE_STATUSES:
            continue
        if status == "failed" and old is not None and old["status"] == "failed" and old["reason"] == row["reason"]:
            continue  # failing as before: not news (the failures table lists it)
        if old is not None and old["status"] == "deleted":
            old = None
        deleted = status == "deleted"
        out.append(DocChange(
            document=row["doc_id"], status=status,
            size_bytes_before=old["size"] if old else (row["size"] if deleted else None),
            size_bytes_after=None if deleted else row["size"],
            hash_before=_short(old["content_sha256"]) if old else (_short(row["content_sha256"]) if deleted else None),
            hash_after=None if deleted else _short(row["content_sha256"]),
            reason=row["reason"] if status == "failed" else _what_changed(old, row) if status == "changed" else None,
        ))
    return sort_changes(out)


def _what_changed(old: dict | None, row: dict) -> str | None:
    """Why a document with the same id is processed again: its bytes, its metadata (sidecar, record
    fields, access rules), or neither, when the settings that decide chunks or the parser changed
    (``Settings.pipeline_fingerprint``): then every document changes at once, for a known reason."""
    if old is None:
        return None
    if old["content_sha256"] != row["content_sha256"]:
        return "content changed"
    if old["meta_sha256"] != row["meta_sha256"]:
        return "metadata or access changed"
    return "same content: re-processed for new pipeline settings or parser version"


def sort_changes(changes: list[DocChange]) -> list[DocChange]:
    order = {s: i for i, s in enumerate(("failed", "changed", "new", "deleted"))}
    return sorted(changes, key=lambda c: (order.get(c.status, 9), c.document))


def chunk_changes(before: pa.Table, after: pa.Table) -> list[DocChange]:
    """Per document whose chunks differ between two ``(doc_id, text_sha256)`` tables (the index
    before and after a sync): chunks added, removed and kept, compared by text so an edit near the
    top of a document does not count its untouched paragraphs as replaced."""
    def texts(table: pa.Table) -> dict[str, Counter]:
        out: dict[str, Counter] = {}
        for doc, sha in zip(table.column("doc_id").to_pylist(), table.column("text_sha256").to_pylist()):
            out.setdefault(doc, Counter())[sha] += 1
        return out

    old, new = texts(before), texts(after)
    changes = []
    for doc in sorted(set(old) | set(new)):
        a, b = old.get(doc, Counter()), new.get(doc, Counter())
        if a == b:
            continue
        kept = sum((a & b).values())
        status = "new" if not a else "deleted" if not b else "changed"
        changes.append(DocChange(document=doc, status=status, chunks_added=sum(b.values()) - kept,
                                 chunks_removed=sum(a.values()) - kept, chunks_kept=kept))
    return sort_changes(changes)


def with_chunk_counts(changes: list[DocChange], chunks: list[DocChange]) -> list[DocChange]:
    """The manifest's changes joined with the index's chunk counts (by document)."""
    by_doc = {c.document: c for c in chunks}
    out = []
    for c in changes:
        k = by_doc.pop(c.document, None)
        out.append(c if k is None else DocChange(**{**c.to_dict(), "chunks_added": k.chunks_added,
                                                    "chunks_removed": k.chunks_removed, "chunks_kept": k.chunks_kept}))
    return sort_changes(out + list(by_doc.values()))


def run_tag(changes: list[DocChange], first: int = 3, max_chars: int = 240) -> str:
    """``"changed: a.md; new: b.md; failed: c.pdf (+4 more)"``: the first few, for a run's tags."""
    parts = [f"{c.status}: {c.document}" for c in changes[:first]]
    more = len(changes) - first
    text = "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def index_texts(store) -> pa.Table:
    """``(doc_id, text_sha256)`` of every row of the index's latest version (empty before the first
    build): what :func:`chunk_changes` compares before and after a sync."""
    from ingest_platform.index import _scan

    if not store.exists():
        return pa.table({"doc_id": pa.array([], pa.string()), "text_sha256": pa.array([], pa.string())})
    return _scan(store.open(), ["doc_id", "text_sha256"])
