"""Relevance feedback on production answers: who judged which document for which traced query.

A judgement points at a trace (``SearchResult.trace_id``) and a document, and says whether that
document answers the query. Judgements are appended to ``<home>/feedback/feedback.jsonl`` and never
rewritten: a later judgement of the same (trace, document) by the same judge supersedes the earlier
one when the golden set is grown from them (``golden.add_feedback``), but both stay on record.

The document need not be among the trace's hits (pointing at the document that *should* have been
found is the most useful feedback), but it must exist in the index version that answered, and be
visible to the groups that asked: a golden entry built from it must be answerable by those groups.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest_platform import state, traces
from ingest_platform.index import PRODUCTION, IndexError_, IndexStore, quote

JUDGE_ENV = "INGEST_PLATFORM_JUDGE"
MAX_NOTE_CHARS = 2000


class FeedbackError(ValueError):
    """Feedback that cannot be recorded: unknown trace, unknown or invisible document, bad value."""


@dataclass(frozen=True)
class Feedback:
    """One judgement, as stored (one JSON line)."""

    trace_id: str
    doc_id: str
    relevant: bool
    note: str | None
    judge: str
    at: str
    query: str
    groups: tuple[str, ...]
    index_version: int | None
    retrieved: bool  # was the document among the trace's hits

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"groups": list(self.groups)}


def path(home: str | os.PathLike) -> Path:
    return state.feedback(home)


def default_judge() -> str:
    """``INGEST_PLATFORM_JUDGE`` if set, else the operating-system user."""
    if os.environ.get(JUDGE_ENV):
        return os.environ[JUDGE_ENV]
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (some containers)
        return "unknown"


def _check_doc(store: IndexStore, trace: dict, doc_id: str) -> None:
    """Raise ``FeedbackError`` unless ``doc_id`` exists in the trace's index version (production
    when that version is gone) and is visible to the trace's groups."""
    from ingest_platform.query import access_filter

    version = trace.get("index_version")
    try:
        try:
            table = store.checkout(int(version)) if version is not None else store.checkout(PRODUCTION)
        except (ValueError, OSError, RuntimeError):  # the version was cleaned up since
            table, version = store.checkout(PRODUCTION), store.version_of(PRODUCTION)
    except IndexError_ as exc:
        raise FeedbackError(f"cannot check document {doc_id!r}: {exc}") from None
    if not table.count_rows(f"doc_id = {quote(doc_id)}"):
        raise FeedbackError(f"unknown document {doc_id!r}: not in index version {version} "
                            "(doc ids look like SOURCE:PATH, as in a hit's doc_id)")
    groups = tuple(trace.get("groups") or ())
    if not groups or not table.count_rows(f"doc_id = {quote(doc_id)} AND {access_filter(groups)}"):
        raise FeedbackError(f"document {doc_id!r} is not visible to the query's groups "
                            f"({', '.join(groups) or 'none'}), so it cannot answer it")


def record(home: str | os.PathLike, store: IndexStore, trace_id: str, doc_id: str, relevant: bool,
           note: str | None = None, judge: str | None = None) -> Feedback:
    """Validate and append one judgement; returns what was stored."""
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise FeedbackError("doc_id must be a non-empty string")
    if not isinstance(relevant, bool):
        raise FeedbackError(f"relevant must be True or False, not {relevant!r}")
    if note is not None and not isinstance(note, str):
        raise FeedbackError(f"note must be a string, not {type(note).__name__}")
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise FeedbackError(f"note is {len(note)} characters long; at most {MAX_NOTE_CHARS}")
    judge = default_judge() if judge is None else judge
    if not isinstance(judge, str) or not judge.strip():
        raise FeedbackError("judge must be a non-empty string")
    try:
        trace = traces.find(home, trace_id)
    except traces.TraceError as exc:
        raise FeedbackError(str(exc)) from None
    if trace.get("error"):
        raise FeedbackError(f"trace {trace_id!r} is of a query that was not answered ({trace['error']}): "
                            "there is nothing to judge")
    doc_id = doc_id.strip()
    retrieved = doc_id in (trace.get("hit_doc_ids") or [])
    if not retrieved:
        _check_doc(store, trace, doc_id)
    item = Feedback(
        trace_id=trace["trace_id"], doc_id=doc_id, relevant=relevant, note=note or None, judge=judge.strip(),
        at=datetime.now(UTC).isoformat(), query=trace.get("query", ""), groups=tuple(trace.get("groups") or ()),
        index_version=trace.get("index_version"), retrieved=retrieved,
    )
    from ingest_platform.storage import append_text

    append_text(path(home), json.dumps(item.to_json(), ensure_ascii=False) + "\n")  # one O_APPEND write locally
    return item


def load(home: str | os.PathLike) -> list[Feedback]:
    """Every stored judgement, oldest first (a line cut by a crash is skipped)."""
    out: list[Feedback] = []
    try:
        fh = path(home).open(encoding="utf-8")
    except FileNotFoundError:
        return out
    with fh:
        for line in fh:
            try:
                data = json.loads(line)
                data["groups"] = tuple(data.get("groups") or ())
                out.append(Feedback(**data))
            except (json.JSONDecodeError, TypeError):
                continue
    return out


__all__ = ["Feedback", "FeedbackError", "record", "load", "path", "default_judge"]
