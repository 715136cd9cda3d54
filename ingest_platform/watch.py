"""Cheap change detection for sensors: what a run would find new, changed or deleted, without
running it.

The persisted manifest already holds every document's size, mtime and content hash as the last run
saw them, so a listing is compared with it. Only documents whose size or mtime moved are read and
hashed, and a touched-but-identical file is not a change. The digest of the pending change set is
a natural run key: the same pending changes never request two runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ingest_platform import manifest as mf
from ingest_platform.config import Settings
from ingest_platform.sources import make_source


@dataclass
class ChangeSet:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # doc_id -> reason: parses that timed out or lost their worker, due to be tried again now
    # (``manifest.retry_due``). The reason names the attempt, so each attempt is a new change set,
    # and after the last one the document is no longer pending: no endless runs.
    retry: dict[str, str] = field(default_factory=dict)
    hashed: int = 0  # documents read to tell a real change from a touch
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.new) + len(self.changed) + len(self.deleted) + len(self.retry)

    @property
    def digest(self) -> str:
        payload = "\n".join([*(f"{k}:{d}" for k, ids in (("n", self.new), ("c", self.changed), ("d", self.deleted))
                               for d in sorted(ids)), *(f"r:{d}:{why}" for d, why in sorted(self.retry.items()))])
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def pending_changes(settings: Settings) -> ChangeSet:
    previous = {r["doc_id"]: r for r in mf.load_manifest(settings.state).to_pylist() if r["status"] != "deleted"}
    now = datetime.now(UTC)
    out = ChangeSet(retry={d: r["reason"] for d, r in previous.items()
                           if (due := mf.retry_due(r["reason"])) is not None and due <= now})
    fingerprint = settings.pipeline_fingerprint()
    seen: set[str] = set()
    listed_sources: set[str] = set()
    for cfg in settings.sources:
        try:
            items = list(make_source(cfg, settings.default_access_groups).scan())
        except (OSError, ValueError, ImportError) as exc:
            out.errors.append(f"source {cfg.name!r} could not be listed: {exc}")
            continue
        listed_sources.add(cfg.name)
        for item in items:
            seen.add(item.doc_id)
            old = previous.get(item.doc_id)
            if old is None:
                out.new.append(item.doc_id)
                continue
            if item.error:
                if item.outage and mf.keeps_last_good(old, item):
                    continue  # the storage failed, not the document: its last good version stays
                if old["reason"] != item.error:
                    out.changed.append(item.doc_id)
                continue
            content = item.content_sha256
            if content is None:
                if old["size"] == item.size and old["mtime"] == item.mtime and old["content_sha256"]:
                    content = old["content_sha256"]
                else:
                    try:
                        content = hashlib.sha256(item.read()).hexdigest()
                        out.hashed += 1
                    except OSError:
                        out.changed.append(item.doc_id)
                        continue
            if mf.doc_version(content, item.meta_sha256, fingerprint) != old["doc_version"]:
                out.changed.append(item.doc_id)
    configured = {c.name for c in settings.sources}
    for doc_id, old in previous.items():
        if doc_id in seen:
            continue
        if old["source"] in listed_sources or old["source"] not in configured:
            out.deleted.append(doc_id)
    return out
