"""Growing the golden set from production: judged feedback becomes golden entries with provenance.

The curated golden set (``[eval] golden_file``) is written by people and never touched here.
Entries derived from feedback go to a file of their own, ``[eval] production_golden_file``
(default ``<home>/golden/production.jsonl``), which the evaluation scores beside the curated set
and reports separately (``EvalReport.per_set``), so a team sees both "does it still answer what we
wrote down" and "does it answer what users actually asked and we judged".

From the feedback log (``ingest_platform/feedback.py``), per query (its whitespace- and
case-normalised text and the groups that asked):

- the latest judgement of each document wins (a judge may correct themselves or another);
- documents judged relevant become ``relevant_doc_ids`` (grade 1); documents judged not relevant
  get grade 0 (they count against nDCG only by taking a rank a relevant one should have);
- a query with no document judged relevant is skipped (there is nothing to score it against);
- a query already in the curated set (same text and groups) is skipped: the curated entry rules;
- the entry's id is derived from the query and groups, so re-running updates entries in place and
  a query asked many times appears once; ``provenance`` lists every judgement (trace id, date,
  judge) behind it, and the entry is tagged ``production``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ingest_platform import feedback, state
from ingest_platform.config import Settings
from ingest_platform.storage import atomic_write_text

PRODUCTION_TAG = "production"
SYNTHETIC_TAG = "synthetic"


def production_file(settings: Settings) -> Path:
    """Where production-derived golden entries live."""
    chosen = settings.eval.production_golden_file
    return Path(chosen) if chosen else state.production_golden(settings.state)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def entry_id(query: str, groups: tuple[str, ...]) -> str:
    digest = hashlib.sha256(json.dumps([_norm(query), sorted(groups)]).encode()).hexdigest()
    return f"prod-{digest[:12]}"


@dataclass
class AddFeedbackResult:
    path: str
    added: int
    updated: int
    unchanged: int
    skipped: list[dict] = field(default_factory=list)  # {"query", "reason"}
    entries: int = 0  # in the file afterwards

    def to_json(self) -> dict:
        return self.__dict__


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def add_feedback(settings: Settings, out: str | Path | None = None) -> AddFeedbackResult:
    """Turn the judged feedback under ``settings.home`` into golden entries in ``out`` (default
    ``production_file(settings)``), merged with what is there; see the module docstring."""
    from ingest_platform.evaluation import load_golden, parse_golden_line

    path = Path(out) if out else production_file(settings)
    curated: set[tuple[str, tuple[str, ...]]] = set()
    if settings.eval.golden_file and Path(settings.eval.golden_file).exists():
        curated = {(_norm(q.query), tuple(sorted(q.groups))) for q in load_golden(settings.eval.golden_file)}
    latest: dict[tuple, feedback.Feedback] = {}
    grouped: dict[tuple[str, tuple[str, ...]], list[feedback.Feedback]] = {}
    for item in feedback.load(settings.state):
        key = (_norm(item.query), tuple(sorted(item.groups)))
        grouped.setdefault(key, []).append(item)
        latest[(*key, item.doc_id)] = item  # later lines win
    existing = {e["id"]: e for e in _read_jsonl(path)}
    result = AddFeedbackResult(str(path), 0, 0, 0)
    for key, items in grouped.items():
        norm, groups = key
        query = items[-1].query
        if key in curated:
            result.skipped.append({"query": query, "reason": "already in the curated golden set"})
            continue
        docs = sorted({i.doc_id for i in items})
        verdicts = {d: latest[(*key, d)].relevant for d in docs}
        relevant = [d for d in docs if verdicts[d]]
        if not relevant:
            result.skipped.append({"query": query, "reason": "no document judged relevant"})
            continue
        entry = {
            "id": entry_id(query, groups), "query": query, "relevant_doc_ids": relevant,
            "grades": {d: 1 if verdicts[d] else 0 for d in docs}, "tags": [PRODUCTION_TAG], "groups": list(groups),
            "provenance": {
                "source": "feedback", "first_judged": min(i.at for i in items)[:10],
                "judges": sorted({i.judge for i in items}), "trace_ids": sorted({i.trace_id for i in items}),
                "judgements": [{"trace_id": i.trace_id, "doc_id": i.doc_id, "relevant": i.relevant, "judge": i.judge,
                                "at": i.at, **({"note": i.note} if i.note else {})} for i in items],
            },
        }
        parse_golden_line(entry, f"{path} (id {entry['id']})")  # what we write must load
        old = existing.get(entry["id"])
        if old is None:
            result.added += 1
        elif old != entry:
            result.updated += 1
        else:
            result.unchanged += 1
        existing[entry["id"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in existing.values()), path)
    result.entries = len(existing)
    return result


__all__ = ["add_feedback", "AddFeedbackResult", "production_file", "entry_id", "PRODUCTION_TAG", "SYNTHETIC_TAG"]
