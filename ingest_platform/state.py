"""Every path under ``home``: the one module that knows where the platform keeps its state.

Why one owner: "where is this written?" must have one answer, so moving the state (to another
disk, to object storage) or cleaning it up never needs a search through the code. Every other
module asks here for its paths and never joins a file name onto ``home`` itself.

``home`` is a local folder or an fsspec URI (``s3://bucket/prefix``, ``memory://...``). A local
home gives ``pathlib.Path`` objects; a URI gives ``upath.UPath`` objects with the same interface
(``/``, ``open``, ``read_text``, ``exists``, ``glob``...), backed by the URI's filesystem.

Layout::

    <home>/
      manifest.parquet            the document manifest (one row per document ever seen)
      scans.jsonl                 one line per source per scan: listed, or why not
      parsed/elements/            parse cache: element segments keyed by content hash + parser version
      parsed/failures/            parse failures keyed by content hash + parser and parse settings
      chunks/<shard>.parquet  enriched/<shard>.parquet  indexable/<shard>.parquet
      minhash.parquet  corpus-report.json
      embeddings/<model>/         vector segments keyed by text hash
      lancedb/                    the index (unless [index] uri puts it elsewhere)
      promotions.jsonl            every move of the production tag
      gates/v<N>/<gate>.json      recorded gate verdicts per index version
      evals/v<N>.json  evals/history/<table>/*.parquet  evals/history.png
      holds/deletions.json  holds/revoked-since-scan.json  holds/rollback-request.json  revocations.jsonl
      traces/queries-<day>.jsonl  feedback/feedback.jsonl  golden/production.jsonl  review/
      monitoring/  guardrails-history.jsonl  last_complete_run.json
      dagster/                    the Dagster instance (runs, events, schedules)
      writer.lock
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LOCK_NAME = "writer.lock"


def _text(home) -> str:
    """``home`` as text: a path or URI string (a ``UPath`` of a remote home is not ``PathLike``)."""
    if getattr(home, "protocol", "") not in ("", "file", "local"):
        return str(home)
    return os.fspath(home)


def root(home: str | os.PathLike) -> Path:
    """``home`` as a path object: ``Path`` for a local folder (or ``file://`` URI), ``UPath`` for
    any other fsspec URI."""
    if getattr(home, "protocol", "") not in ("", "file", "local"):
        return home  # already a UPath
    text = _text(home)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if "://" in text:
        from upath import UPath

        return UPath(text)
    return Path(text)


def is_local(home: str | os.PathLike) -> bool:
    text = _text(home)
    return "://" not in text or text.startswith("file://")


# ---- ingest -------------------------------------------------------------------------------------


def manifest(home) -> Path:
    return root(home) / "manifest.parquet"


def scans(home) -> Path:
    return root(home) / "scans.jsonl"


def parsed_elements(home) -> Path:
    return root(home) / "parsed" / "elements"


def parse_failures(home) -> Path:
    return root(home) / "parsed" / "failures"


def parse_attempts(home) -> Path:
    """One row per run that tried a document and hit a timeout or a dead worker (``[parsing] attempts``)."""
    return root(home) / "parsed" / "attempts"


def chunks(home) -> Path:
    """One Parquet file per shard (``ingest_platform.shards``)."""
    return root(home) / "chunks"


def enriched(home) -> Path:
    return root(home) / "enriched"


def indexable(home) -> Path:
    """The enriched chunks after the corpus-wide guardrails: what is embedded and indexed."""
    return root(home) / "indexable"


def legacy(home) -> list[Path]:
    """Files of an older layout (one table for the whole corpus) that the sharded one replaced."""
    return [root(home) / name for name in ("chunks.parquet", "enriched.parquet", "indexable.parquet")]


def finalized(home) -> Path:
    """What the indexable folder was made from (``pipeline.finalize_corpus``): the enriched and the
    indexable listings at that time."""
    return indexable(home) / "_finalized.json"


def minhash(home) -> Path:
    return root(home) / "minhash.parquet"


def corpus_report(home) -> Path:
    return root(home) / "corpus-report.json"


def embeddings(home, model_slug: str) -> Path:
    return root(home) / "embeddings" / model_slug


def guardrails_history(home) -> Path:
    return root(home) / "guardrails-history.jsonl"


# ---- index and gates ----------------------------------------------------------------------------


def lancedb(home) -> Path:
    return root(home) / "lancedb"


def promotions(home) -> Path:
    return root(home) / "promotions.jsonl"


def gates(home) -> Path:
    return root(home) / "gates"


def gate(home, version: int, name: str) -> Path:
    """One gate's verdict for one index version: a file each, so checks of one run (in several
    processes, or on several machines) never rewrite each other's."""
    return gates(home) / f"v{version}" / f"{name}.json"


def eval_report(home, version: int) -> Path:
    return root(home) / "evals" / f"v{version}.json"


def eval_history(home) -> Path:
    """Append-only Parquet files per history table, read by DuckDB (``evaluation.history_connection``)."""
    return root(home) / "evals" / "history"


def eval_plot(home) -> Path:
    return root(home) / "evals" / "history.png"


def deletion_hold(home) -> Path:
    return root(home) / "holds" / "deletions.json"


def revoked_since_scan(home) -> Path:
    return root(home) / "holds" / "revoked-since-scan.json"


def rollback_request(home) -> Path:
    return root(home) / "holds" / "rollback-request.json"


def revocations(home) -> Path:
    return root(home) / "revocations.jsonl"


def last_complete_run(home) -> Path:
    return root(home) / "last_complete_run.json"


# ---- serving and the production loop ------------------------------------------------------------


def traces(home) -> Path:
    return root(home) / "traces"


def trace_file(home, stamp: str) -> Path:
    return traces(home) / f"queries-{stamp}.jsonl"


def feedback(home) -> Path:
    return root(home) / "feedback" / "feedback.jsonl"


def production_golden(home) -> Path:
    return root(home) / "golden" / "production.jsonl"


def synthetic_golden(home) -> Path:
    return root(home) / "golden" / "synthetic.jsonl"


def review(home, day: str) -> Path:
    return root(home) / "review" / f"review-{day}.json"


def monitoring_vocabulary(home, version: int) -> Path:
    return root(home) / "monitoring" / f"vocabulary-v{version}.txt"


def monitoring_plot(home, name: str) -> Path:
    return root(home) / "monitoring" / f"{name}.png"


def models() -> Path:
    """Models derived once from an installed embedding model (the ONNX query encoder). Not under
    any home: they depend on the model alone, so every home on a machine (and every test) shares
    one export, on a local disk they are loaded from (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    return _user_cache() / "models"


# ---- processes ----------------------------------------------------------------------------------


def dagster_home(home) -> Path:
    """The Dagster instance: under a local home, or in the local cache of a remote one (its SQLite
    storage needs a local disk; on several machines, use PostgreSQL: ``[dagster] storage``)."""
    return local_cache(home) / "dagster"


def local_cache(home) -> Path:
    """``home`` itself when it is local; for a remote home, a local folder of its own for what
    must be on a local disk (``$XDG_CACHE_HOME`` or ``~/.cache``, ``ingest-platform/<digest>``)."""
    if is_local(home):
        return root(home)
    digest = hashlib.sha1(_text(home).encode()).hexdigest()[:12]
    return _user_cache() / digest


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ingest-platform"


def writer_lock(home) -> Path:
    return root(home) / LOCK_NAME
