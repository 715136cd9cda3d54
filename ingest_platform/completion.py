"""Whether a run would change nothing: the state the last complete run left, as one digest.

A run over unchanged sources already does no work (every stage reconciles on ``doc_version``), but
it still recorded a new materialization of every asset and a new eval-history row for the same
index version, so the UI's histories filled with runs that did nothing. Dagster's answer is to not
materialize: an asset declared with ``output_required=False`` that yields nothing is not
materialized, and the steps downstream of it are skipped.

Deciding that from the scan alone would be unsafe: a run killed after the scan leaves later stages
behind while the next scan sees no source change. So the digest is recorded only when a run
completes (the ``production_index`` step succeeded), and a later scan skips the run only when the
digest of the state it would start from is the same: the same documents at the same versions (and
failures for the same reasons), the same settings, the same golden set and the same index tags (a
manual rollback or promotion makes the next run a real one, as before).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ingest_platform import manifest as mf
from ingest_platform import state
from ingest_platform.config import Settings


@dataclass(frozen=True)
class Completion:
    run_id: str
    digest: str
    at: str


def marker_path(settings: Settings) -> Path:
    return state.last_complete_run(settings.state)


def state_digest(settings: Settings) -> str:
    """The digest of what a run starts from: manifest, settings, golden set and index tags."""
    from ingest_platform.pipeline import index_store

    manifest = mf.load_manifest(settings.state)
    docs = sorted(
        (r["doc_id"], r["doc_version"] or "", r["status"] == "failed", r["reason"] or "")
        for r in manifest.select(["doc_id", "doc_version", "status", "reason"]).to_pylist()
        if r["status"] != "deleted"
    )
    golden = settings.eval.golden_file
    golden_sha = (hashlib.sha256(Path(golden).read_bytes()).hexdigest()
                  if golden and Path(golden).is_file() else None)
    payload = {
        "documents": docs,
        "settings": json.loads(settings.model_dump_json()),
        "golden": golden_sha,
        "tags": index_store(settings).tags(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def record_complete(settings: Settings, run_id: str) -> Completion:
    """Called when a run completed: remember the state it left (atomically: rename)."""
    done = Completion(run_id=run_id, digest=state_digest(settings), at=datetime.now(UTC).isoformat())
    from ingest_platform.storage import atomic_write_text

    atomic_write_text(json.dumps(done.__dict__), marker_path(settings))
    return done


def last_complete(settings: Settings) -> Completion | None:
    path = marker_path(settings)
    try:
        return Completion(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def unchanged_since(settings: Settings) -> Completion | None:
    """The last complete run, if the current state (after this run's scan) is exactly what it
    left; ``None`` when this run has work to do or to re-check."""
    last = last_complete(settings)
    return last if last is not None and last.digest == state_digest(settings) else None
