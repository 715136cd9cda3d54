"""Revocations made while a long run is under way.

A run's scan sees deletions and revoked groups, and the fast path takes them out of production at
once. But a run that parses or embeds a whole corpus again (a parser or model upgrade) holds the
home's writer lock for hours, and a deletion or revocation made meanwhile used to wait for the next
run's scan. So parsing and embedding call ``during_run`` as they go: at most every ``[safety]
revocation_check_s`` seconds it lists the sources again (a listing: sidecars are read, documents
are not read or hashed) and whatever they no longer allow leaves production now, through
``promotion.apply_revocations``. It is also recorded (``promotion.record_revoked_since_scan``)
until the next scan writes it into the manifest, so the run's own candidate, built from the older
manifest, cannot bring it back when promoted.

The scan's rules hold here too: a source that cannot be listed changes nothing; a document the
storage failed to stat keeps its last good version unless its groups narrowed; and a drop large
enough for the scan to hold (``SafetySettings.holds_deletion``) is left for the next scan to hold.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from ingest_platform import manifest as mf
from ingest_platform.config import Settings
from ingest_platform.errors import HomeLocked, SourceUnavailable
from ingest_platform.sources import make_source

log = logging.getLogger(__name__)

_last_check: dict[str, float] = {}  # home -> when its sources were last listed in this process


def scanned(settings: Settings) -> None:
    """A scan just listed every source and saved the manifest: the clock restarts and what the
    checks since the previous scan recorded is in the manifest now."""
    from ingest_platform import promotion

    _last_check[str(settings.home)] = time.monotonic()
    promotion.forget_revoked_since_scan(settings)


def listed_revocations(settings: Settings) -> tuple[list[str], dict[str, list[str]]]:
    """List the configured sources: (documents gone, {document: the groups it keeps}) for the
    live documents of the manifest whose source no longer allows what the manifest says."""
    rows = mf.load_manifest(settings.state).select(
        ["doc_id", "source", "status", "doc_version", "access_groups"]).to_pylist()
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] != "deleted":
            by_source.setdefault(row["source"], []).append(row)
    deleted: list[str] = []
    narrowed: dict[str, list[str]] = {}
    for cfg in settings.sources:
        known = by_source.get(cfg.name)
        if not known:
            continue
        try:
            listed = {item.doc_id: item for item in make_source(cfg, settings.default_access_groups).scan()}
        except (SourceUnavailable, OSError, ValueError, ImportError) as exc:
            log.info("revocation check: source %r not listed (%s): nothing of it changes", cfg.name, exc)
            continue
        gone = [row["doc_id"] for row in known if row["doc_id"] not in listed]
        if gone and not settings.safety.holds_deletion(len(known), len(gone)):
            deleted += gone
        for row in known:
            item = listed.get(row["doc_id"])
            if item is None or (item.outage and mf.keeps_last_good(row, item)):
                continue
            had = set(row["access_groups"] or ())
            keeps = had & set(item.access_groups)  # a document that failed to list keeps none
            if keeps != had:
                narrowed[row["doc_id"]] = sorted(keeps)
    return sorted(deleted), narrowed


def during_run(settings: Settings, stage: str):
    """Called by a long stage as it goes; lists the sources and applies what they revoked when
    ``[safety] revocation_check_s`` has passed since the last listing. Returns the
    ``promotion.RevocationResult`` when production changed, else None.

    Never fails the stage: a check that cannot run (another process holds the writer lock, the
    index cannot be opened) is logged and tried again later, and the next scan sees everything.
    The shard steps of a run spread over processes list the sources once per interval between
    them, not once each (the time of the last check is kept beside what it found)."""
    key, interval = str(settings.home), settings.safety.revocation_check_s
    now = time.monotonic()
    if now - _last_check.setdefault(key, now) < interval:
        return None
    _last_check[key] = now
    from ingest_platform import promotion
    from ingest_platform.locking import writer_lock

    try:
        with writer_lock(settings.home, what=f"revocation check during {stage}"):
            promotion.apply_requested_rollback(settings)  # an operator's, handed to this run
            last = promotion.revoked_since_scan(settings)["checked_at"]  # by any process of the run
            if last and (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds() < interval:
                return None
            deleted, narrowed = listed_revocations(settings)
            promotion.record_revoked_since_scan(settings, deleted, narrowed)
            if not deleted and not narrowed:
                return None
            return promotion.apply_revocations(settings, why=f"seen while the run was at {stage}")
    except HomeLocked:
        log.info("revocation check during %s skipped: another process holds the writer lock", stage)
    except Exception as exc:  # noqa: BLE001 - the stage goes on; the next check or scan catches up
        log.warning("revocation check during %s failed (tried again in %.0fs): %s", stage,
                    interval, exc)
    return None


def checking(settings: Settings, stage: str, progress=None):
    """A progress callback for a long stage that also runs ``during_run`` (and feeds ``progress``)."""

    def report(n: int = 1) -> None:
        during_run(settings, stage)
        if progress:
            progress(n)

    return report


__all__ = ["during_run", "checking", "listed_revocations", "scanned"]
