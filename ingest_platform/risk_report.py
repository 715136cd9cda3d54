"""What the guardrails found in a build, for the Dagster UI and the guardrails check.

Why a separate module: the enriched-chunks asset, its check and the CLI all show the same numbers
(flags per risk type, the flagged documents, quarantine, boilerplate, near-duplicates, superseded
versions), computed from the stage outputs on disk, with no Dagster import here.

The check (``check_guardrails``) warns, by default without blocking, when flagged chunks *appear*
(none in the previous build, some now) or *jump* (more than ``[guardrails] max_flagged_increase``
more than the previous build). Setting ``[quality] blocking.guardrails = true`` makes a failing check
stop the run before promotion. Each evaluation appends the count to ``<home>/guardrails-history.jsonl``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from ingest_platform import state
from ingest_platform.config import Settings
from ingest_platform.guardrails import RISK_TYPES
from ingest_platform.quality import QualityResult

GUARDRAILS = "guardrails"


def history_path(settings: Settings) -> Path:
    return state.guardrails_history(settings.state)


def summarize(settings: Settings, per_document: pa.Table | None = None, indexed: pa.Table | None = None) -> dict:
    """Counts and tables: ``chunks_by_risk`` (chunks per risk type), ``occurrences_by_risk``,
    ``flagged_chunks``, ``quarantined_chunks``, ``flagged_documents`` (rows: doc_id, policy, flags,
    chunks, quarantined), ``near_duplicate_groups``, ``superseded`` and the boilerplate numbers."""
    from ingest_platform import pipeline

    per_document = per_document if per_document is not None else pipeline.load_enriched_documents(
        settings, ["doc_id", "source", "risk_counts_json", "quarantined"])
    indexed = indexed if indexed is not None else pipeline.load_enriched(settings, ["doc_id", "superseded_by"])
    policies = pipeline.risk_policies(settings)
    chunks_by = {t: 0 for t in RISK_TYPES}
    occurrences = {t: 0 for t in RISK_TYPES}
    docs: dict[str, dict] = defaultdict(lambda: {"flags": set(), "chunks": 0, "quarantined": 0})
    flagged = quarantined = 0
    rows = per_document.select(["doc_id", "source", "risk_counts_json", "quarantined"]).to_pylist()
    for r in rows:
        counts = json.loads(r["risk_counts_json"] or "{}")
        if not counts:
            continue
        flagged += 1
        quarantined += bool(r["quarantined"])
        doc = docs[r["doc_id"]]
        doc["source"] = r["source"]
        doc["flags"].update(counts)
        doc["chunks"] += 1
        doc["quarantined"] += bool(r["quarantined"])
        for kind, n in counts.items():
            chunks_by[kind] = chunks_by.get(kind, 0) + 1
            occurrences[kind] = occurrences.get(kind, 0) + n
    report = _corpus_report(settings)
    flagged_docs = [
        {"doc_id": d, "policy": policies.get(v.get("source") or "", settings.guardrails.policy),
         "flags": ", ".join(sorted(v["flags"])), "flagged_chunks": v["chunks"], "quarantined_chunks": v["quarantined"]}
        for d, v in sorted(docs.items())
    ]
    superseded = {}
    for r in indexed.select(["doc_id", "superseded_by"]).to_pylist():
        if r["superseded_by"]:
            superseded[r["doc_id"]] = r["superseded_by"]
    return {
        "flagged_chunks": flagged, "quarantined_chunks": quarantined, "flagged_document_count": len(docs),
        "chunks_by_risk": chunks_by, "occurrences_by_risk": occurrences, "flagged_documents": flagged_docs,
        "boilerplate_lines": report.get("boilerplate_lines", 0),
        "boilerplate_removed": report.get("boilerplate_removed", 0),
        "boilerplate_chunks_dropped": report.get("boilerplate_chunks_dropped", 0),
        "boilerplate_examples": report.get("boilerplate_examples", []),
        "near_duplicate_groups": report.get("near_duplicate_groups", []),
        "superseded": [{"doc_id": d, "superseded_by": n} for d, n in sorted(superseded.items())],
    }


def _corpus_report(settings: Settings) -> dict:
    from ingest_platform import pipeline

    path = pipeline.corpus_report_path(settings)
    return json.loads(path.read_text()) if path.exists() else {}


def _previous_count(settings: Settings) -> int | None:
    path = history_path(settings)
    if not path.exists():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return int(json.loads(lines[-1])["flagged_chunks"]) if lines else None
    except (ValueError, KeyError, TypeError):
        return None


def check_guardrails(settings: Settings, *, record: bool = True) -> QualityResult:
    """Fails (a warning unless blocking is configured) when flagged chunks appear or jump.

    Returns a ``QualityResult`` named ``guardrails`` whose ``observed`` holds the counts, the
    previous build's count and the increase; ``failing_examples`` lists flagged documents.
    """
    summary = summarize(settings)
    flagged = summary["flagged_chunks"]
    previous = _previous_count(settings)
    increase = flagged - (previous or 0)
    appeared = flagged > 0 and not previous
    jumped = previous is not None and increase > settings.guardrails.max_flagged_increase
    passed = not (appeared or jumped)
    why = ("flagged chunks appeared" if appeared else f"flagged chunks rose by {increase}" if jumped
           else "no new flagged chunks")
    expectations = [{"expectation": "flagged chunks do not appear or jump", "column": "risk_flags",
                     "success": passed, "observed": why, "unexpected_count": max(increase, 0) if not passed else 0,
                     "unexpected_percent": None, "mostly": None}]
    if record:
        from ingest_platform.storage import append_text

        append_text(history_path(settings), json.dumps({"at": datetime.now(UTC).isoformat(), "flagged_chunks": flagged}) + "\n")
    examples = [{"failed": "flagged", **row} for row in summary["flagged_documents"][: settings.quality.max_examples]]
    return QualityResult(
        GUARDRAILS, passed, settings.quality.is_blocking(GUARDRAILS),
        {"evaluated_expectations": 1, "successful_expectations": int(passed),
         "unsuccessful_expectations": int(not passed), "success_percent": 100.0 if passed else 0.0},
        expectations, [] if passed else examples,
        {"flagged_chunks": flagged, "previous_flagged_chunks": previous, "increase": increase,
         "quarantined_chunks": summary["quarantined_chunks"], "flagged_documents": summary["flagged_document_count"],
         "chunks_by_risk": {k: v for k, v in summary["chunks_by_risk"].items() if v},
         "max_flagged_increase": settings.guardrails.max_flagged_increase},
    )
