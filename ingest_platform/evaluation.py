"""Golden-set retrieval evaluation: metrics per query, per tag and overall; the promotion verdict;
eval history in DuckDB and a small plot of it.

Golden set (JSONL, one object per line; see ``data/README.md``)::

    {"id": "q01", "query": "...", "relevant_doc_ids": ["src:a.md"], "relevant_snippets": ["..."],
     "grades": {"src:a.md": 2, "src:b.md": 1}, "tags": ["exact-term"], "groups": ["public"]}

How a query is judged (``score_query``):

- The query runs through the real ``Retriever`` (hybrid by default) with its ``groups``, asking for
  ``n = max(k, 10)`` hits. Hits are chunks; documents are ranked by their best chunk: the hit list is
  deduplicated by ``doc_id`` keeping the first, and a document's rank is its position in that
  deduplicated list (hits ``[A, A, B]`` rank A first and B second). "Top k" means the documents of the
  first k hits (what a caller asking for k results sees), so it can hold fewer than k documents.
- Relevance comes from the doc ids. ``relevant_doc_ids`` are the answering documents: recall@k, hit@k
  and MRR@10 count only them. nDCG@10 uses graded gains: ``grades[doc]`` when given, else 1 for a
  relevant doc id, else 0; DCG = sum(gain / log2(rank + 1)) over the top 10 ranks, normalised by the
  ideal ordering of all judged gains.
- Snippets are judged separately on the chunk text: snippet_hit@k is 1 when any of the first k hits
  contains any snippet, snippet_recall@k is the share of snippets found there (case-insensitive,
  whitespace-normalised). A query with snippets but no doc ids is judged by them alone: a document is
  relevant when one of its retrieved chunks contains a snippet, recall@k is snippet_recall@k, and the
  ideal for nDCG has one relevant document per snippet.

Queries without snippets get no snippet metrics (they are left out of those means, not counted as 0).

History: append-only Parquet files under ``<home>/evals/history/`` (``eval_runs``, ``eval_metrics``
with a row per (run, version, metric) for the overall and per-tag means, ``eval_queries`` with a row
per query), one file per table per recorded run. DuckDB reads them in place (``read_parquet`` over
the folder; ``history_sql`` gives the views): no process ever holds a database file open for
writing, so writers in several processes or machines never wait for each other, and the history
can live on object storage beside the rest of the state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest_platform import state
from ingest_platform.config import PUBLIC_GROUP, Settings
from ingest_platform.storage import atomic_write_text

log = logging.getLogger(__name__)

# Every metric a query gets, in display order. ``k`` is ``settings.eval.k``.
METRICS = ("recall_at_k", "hit_at_k", "mrr_at_10", "ndcg_at_10", "snippet_hit_at_k", "snippet_recall_at_k")
# The metrics compared against production for regressions.
GATED = ("recall_at_k", "hit_at_k", "mrr_at_10", "ndcg_at_10")
_KEYS = {"id", "query", "relevant_doc_ids", "relevant_snippets", "grades", "tags", "groups", "notes", "comment",
         "provenance"}
# Which golden set a query belongs to: the curated file, or the entries grown from production
# feedback (``ingest_platform/golden.py``). Floors judge the curated set; regressions each set.
CURATED, PRODUCTION_SET = "curated", "production"
_EPS = 1e-9


def label(metric: str, k: int) -> str:
    """``recall_at_k`` -> ``recall@10``."""
    return metric.replace("_at_k", f"@{k}").replace("_at_10", "@10")


class GoldenSetError(ValueError):
    """The golden set is missing or malformed; the message names the file and line."""


# ---- the golden set -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldenQuery:
    id: str
    query: str
    relevant_doc_ids: tuple[str, ...] = ()
    relevant_snippets: tuple[str, ...] = ()
    grades: Mapping[str, float] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = (PUBLIC_GROUP,)

    def gain(self, doc_id: str) -> float:
        if doc_id in self.grades:
            return float(self.grades[doc_id])
        return 1.0 if doc_id in self.relevant_doc_ids else 0.0


def _str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise GoldenSetError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def parse_golden_line(data: Any, where: str) -> GoldenQuery:
    """One golden-set record, validated; ``where`` prefixes error messages (``file:line``)."""
    if not isinstance(data, dict):
        raise GoldenSetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise GoldenSetError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(sorted(_KEYS))}")
    qid = data.get("id")
    if not isinstance(qid, str) or not qid.strip():
        raise GoldenSetError(f"{where}: 'id' must be a non-empty string")
    where = f"{where} (id {qid!r})"
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise GoldenSetError(f"{where}: 'query' must be a non-empty string")
    docs = _str_list(data.get("relevant_doc_ids"), "relevant_doc_ids", where)
    snippets = _str_list(data.get("relevant_snippets"), "relevant_snippets", where)
    if len(set(docs)) != len(docs):
        raise GoldenSetError(f"{where}: 'relevant_doc_ids' lists a document twice")
    grades = data.get("grades") or {}
    if not isinstance(grades, dict):
        raise GoldenSetError(f"{where}: 'grades' must be an object of doc id -> number")
    for doc, grade in grades.items():
        if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not math.isfinite(grade) or grade < 0:
            raise GoldenSetError(f"{where}: grade of {doc!r} must be a number >= 0, got {grade!r}")
    for doc in docs:
        if doc in grades and grades[doc] <= 0:
            raise GoldenSetError(f"{where}: {doc!r} is a relevant doc id but has grade {grades[doc]}")
    if not docs and not snippets:
        raise GoldenSetError(f"{where}: give 'relevant_doc_ids' and/or 'relevant_snippets'")
    tags = _str_list(data.get("tags"), "tags", where)
    if "provenance" in data and not isinstance(data["provenance"], dict):
        raise GoldenSetError(f"{where}: 'provenance' must be an object (trace ids, dates, judges)")
    groups = data.get("groups", None)
    groups = (PUBLIC_GROUP,) if groups is None else _str_list(groups, "groups", where)
    if not groups:
        raise GoldenSetError(f"{where}: 'groups' is empty, so the query could see no document")
    return GoldenQuery(qid, query, docs, snippets, dict(grades), tags, groups)


def load_golden(path: str | Path) -> list[GoldenQuery]:
    path = Path(path)
    if not path.exists():
        raise GoldenSetError(f"golden set {path} does not exist")
    out: list[GoldenQuery] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldenSetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        q = parse_golden_line(data, where)
        if q.id in seen:
            raise GoldenSetError(f"{where}: duplicate id {q.id!r} (first on line {seen[q.id]})")
        seen[q.id] = lineno
        out.append(q)
    if not out:
        raise GoldenSetError(f"golden set {path} has no queries")
    return out


def resolve_golden(settings: Settings, golden: str | Path | None = None) -> Path:
    chosen = golden or settings.eval.golden_file
    if not chosen:
        raise GoldenSetError("no golden set: set [eval] golden_file in the config or pass one")
    return Path(chosen)


# ---- scoring ------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _field(hit: Any, name: str) -> Any:
    return hit[name] if isinstance(hit, Mapping) else getattr(hit, name)


def ranked_docs(hits: Iterable[Any]) -> list[str]:
    """Doc ids in order of their best (first) hit, each once."""
    out: list[str] = []
    for hit in hits:
        doc = _field(hit, "doc_id")
        if doc not in out:
            out.append(doc)
    return out


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


@dataclass
class QueryScore:
    id: str
    query: str
    tags: list[str]
    metrics: dict[str, float | None]
    retrieved: list[str]  # documents of the first max(k, 10) hits, best first
    missing: list[str]  # relevant documents not in the top k
    snippets_found: list[str]


def score_query(q: GoldenQuery, hits: Sequence[Any], k: int) -> QueryScore:
    """Metrics of one query from its hits in rank order (objects or dicts with doc_id and text)."""
    top_k, top_10 = list(hits[:k]), list(hits[:10])
    docs_k, docs_10 = ranked_docs(top_k), ranked_docs(top_10)
    texts_k = [_norm(_field(h, "text") or "") for h in top_k]
    found = [s for s in q.relevant_snippets if any(_norm(s) in t for t in texts_k)]
    m: dict[str, float | None] = {"snippet_hit_at_k": None, "snippet_recall_at_k": None}
    if q.relevant_snippets:
        m["snippet_hit_at_k"] = 1.0 if found else 0.0
        m["snippet_recall_at_k"] = len(found) / len(q.relevant_snippets)
    if q.relevant_doc_ids:
        relevant = set(q.relevant_doc_ids)
        gains = {d: q.gain(d) for d in {*q.grades, *relevant}}
        recall = len(relevant & set(docs_k)) / len(relevant)
        ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:10]
    else:  # judged by snippets alone
        snippets = [_norm(s) for s in q.relevant_snippets]
        relevant = {_field(h, "doc_id") for h in hits if any(s in _norm(_field(h, "text") or "") for s in snippets)}
        gains = {d: 1.0 for d in relevant}
        recall = m["snippet_recall_at_k"] or 0.0
        ideal = [1.0] * min(10, max(len(snippets), len(relevant)))
    first = next((rank for rank, d in enumerate(docs_10, start=1) if d in relevant), None)
    ideal_dcg = dcg(ideal)
    m["recall_at_k"] = recall
    m["hit_at_k"] = 1.0 if relevant & set(docs_k) else 0.0
    m["mrr_at_10"] = 1.0 / first if first else 0.0
    m["ndcg_at_10"] = dcg([gains.get(d, 0.0) for d in docs_10]) / ideal_dcg if ideal_dcg > 0 else 0.0
    return QueryScore(
        q.id, q.query, list(q.tags), {name: m[name] for name in METRICS}, ranked_docs(hits),
        sorted(relevant - set(docs_k)), found,
    )


def aggregate(scores: Sequence[QueryScore]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean of each metric overall and per tag (queries without a metric are left out of its mean);
    each group also gets ``queries``, the number of queries in it."""

    def mean(group: Sequence[QueryScore]) -> dict[str, float]:
        out: dict[str, float] = {"queries": len(group)}
        for name in METRICS:
            values = [s.metrics[name] for s in group if s.metrics[name] is not None]
            if values:
                out[name] = sum(values) / len(values)
        return out

    tags = sorted({t for s in scores for t in s.tags})
    return mean(scores), {t: mean([s for s in scores if t in s.tags]) for t in tags}


# ---- reports ------------------------------------------------------------------------------------


@dataclass
class EvalReport:
    ref: str
    version: int
    k: int
    mode: str
    golden_file: str
    golden_sha256: str
    overall: dict[str, float]
    per_tag: dict[str, dict[str, float]]
    per_query: list[QueryScore]
    at: str
    seconds: float
    # Means per golden set (``curated``; ``production`` when feedback-derived entries exist).
    per_set: dict[str, dict[str, float]] = field(default_factory=dict)
    # The documents the golden set expects, and those of them the corpus does not index now
    # (deleted, failed, or never there: a set written for other sources or another source name).
    expected_documents: int = 0
    unindexed_documents: list[str] = field(default_factory=list)

    @property
    def n_queries(self) -> int:
        return len(self.per_query)

    def to_dict(self) -> dict:
        return asdict(self) | {"queries": self.n_queries}

    @classmethod
    def from_dict(cls, data: dict) -> EvalReport:
        data = {k: v for k, v in data.items() if k != "queries"}
        data["per_query"] = [QueryScore(**q) for q in data["per_query"]]
        return cls(**data)


def evaluate(settings: Settings, ref: str | int = "candidate", golden_path: str | Path | None = None,
             k: int | None = None, *, mode: str = "hybrid", retriever=None) -> EvalReport:
    """Run the golden set through the real query function against index version ``ref``."""
    path = resolve_golden(settings, golden_path)
    queries = load_golden(path)
    from ingest_platform.golden import production_file

    extra = production_file(settings)
    digest = hashlib.sha256(path.read_bytes())
    curated_ids = {q.id for q in queries}
    if extra.exists() and extra.stat().st_size and extra.resolve() != path.resolve():
        derived = load_golden(extra)
        clash = curated_ids & {q.id for q in derived}
        if clash:
            raise GoldenSetError(f"{extra}: id {sorted(clash)[0]!r} is also in the curated set {path}")
        queries = queries + derived
        digest.update(b"\0" + extra.read_bytes())
    k = int(k or settings.eval.k)
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    if retriever is None:
        from ingest_platform.query import Retriever

        retriever = Retriever(settings=settings, ref=ref, trace=False, cache_size=0, operator=True)
    started = time.perf_counter()
    version = int(retriever.version)
    n = max(k, 10)
    scores = []
    for q in queries:
        result = retriever.search(q.query, n, mode=mode, groups=list(q.groups))
        scores.append(score_query(q, result.hits, k))
    overall, per_tag = aggregate(scores)
    per_set = {CURATED: aggregate([s for s in scores if s.id in curated_ids])[0]}
    if len(scores) > len(curated_ids):
        per_set[PRODUCTION_SET] = aggregate([s for s in scores if s.id not in curated_ids])[0]
    expected = {d for q in queries for d in (*q.relevant_doc_ids, *q.grades)}
    return EvalReport(
        ref=str(ref), version=version, k=k, mode=mode, golden_file=str(path),
        golden_sha256=digest.hexdigest(), overall=overall, per_tag=per_tag,
        per_query=scores, at=datetime.now(UTC).isoformat(), seconds=round(time.perf_counter() - started, 3),
        per_set=per_set, expected_documents=len(expected),
        unindexed_documents=sorted(expected - _indexed_documents(settings)) if expected else [],
    )


def _indexed_documents(settings: Settings) -> set[str]:
    from ingest_platform import manifest as mf

    return set(mf.live_documents(mf.load_manifest(settings.state))["doc_id"].to_pylist())


def evaluate_candidate_and_production(settings: Settings, golden: str | Path | None = None, k: int | None = None,
                                      ref: str | int = "candidate", mode: str = "hybrid"
                                      ) -> tuple[EvalReport, EvalReport | None]:
    """``ref`` (the candidate) and the current production version, when there is one and it is a
    different version (the same version is not evaluated twice: its report is reused)."""
    from ingest_platform.index import PRODUCTION
    from ingest_platform.pipeline import index_store

    candidate = evaluate(settings, ref, golden, k, mode=mode)
    if str(ref) == PRODUCTION:
        return candidate, None
    production_version = index_store(settings).tags().get(PRODUCTION)
    if production_version is None:
        return candidate, None
    if production_version == candidate.version:
        return candidate, EvalReport(**{**candidate.__dict__, "ref": PRODUCTION})
    production = evaluate(settings, production_version, golden, k, mode=mode)
    production.ref = PRODUCTION  # pinned by number (the tag could move meanwhile), labelled by role
    return candidate, production


# ---- the verdict --------------------------------------------------------------------------------


@dataclass
class GateVerdict:
    passed: bool
    reasons: list[str]
    worse: list[dict]  # queries whose gated metrics dropped against production
    metrics: list[dict]  # per metric: candidate, production, delta, floor
    candidate_version: int
    production_version: int | None
    floors: dict[str, float]
    max_regression: float

    def to_dict(self) -> dict:
        return asdict(self)


def floors(settings: Settings) -> dict[str, float]:
    return {"recall_at_k": settings.eval.min_recall_at_k, "mrr_at_10": settings.eval.min_mrr_at_10}


def compare(candidate: EvalReport, production: EvalReport | None, floors: Mapping[str, float],
            max_regression: float) -> GateVerdict:
    """Fail when a floor is missed, or (with a production report) any gated overall metric fell by
    more than ``max_regression`` (absolute). ``worse`` lists every query that lost on any gated metric,
    largest total loss first, whether or not the gate failed."""
    if production is not None and production.golden_sha256 != candidate.golden_sha256:
        raise ValueError("candidate and production were evaluated on different golden sets")
    if production is not None and production.k != candidate.k:
        raise ValueError("candidate and production were evaluated with different k")
    k = candidate.k
    reasons: list[str] = []
    rows: list[dict] = []
    # Floors were set for the curated set; production-derived entries are often the queries that
    # failed (that is why someone judged them), so they are held to "no regression" instead.
    floored = candidate.per_set.get(CURATED, candidate.overall)
    for metric in METRICS:
        if metric not in candidate.overall:
            continue
        value = candidate.overall[metric]
        floor = floors.get(metric)
        floor_value = floored.get(metric, value)
        prod = production.overall.get(metric) if production is not None else None
        row = {"metric": label(metric, k), "candidate": round(value, 4), "production": None if prod is None else round(prod, 4),
               "delta": None if prod is None else round(value - prod, 4), "floor": floor}
        rows.append(row)
        if floor is not None and floor_value < floor - _EPS:
            reasons.append(f"{label(metric, k)} = {floor_value:.3f} is below the floor {floor:.3f}"
                           + (" (curated set)" if PRODUCTION_SET in candidate.per_set else ""))
        if prod is not None and metric in GATED and value < prod - max_regression - _EPS:
            reasons.append(f"{label(metric, k)} fell from {prod:.3f} (production v{production.version}) to "
                           f"{value:.3f}, more than the allowed {max_regression:.3f}")
    for metric in floors:
        if metric not in candidate.overall:
            reasons.append(f"{metric} has a floor but was not measured")
    for name, values in candidate.per_set.items():
        before = production.per_set.get(name) if production is not None else None
        if not before or len(candidate.per_set) < 2:
            continue  # one set: the overall comparison above is the same comparison
        for metric in GATED:
            if metric in values and metric in before and values[metric] < before[metric] - max_regression - _EPS:
                reasons.append(f"{name} set: {label(metric, k)} fell from {before[metric]:.3f} to "
                               f"{values[metric]:.3f}, more than the allowed {max_regression:.3f}")
    missing = candidate.unindexed_documents
    if reasons and missing:  # the likely cause, said beside the numbers
        e_g = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        reasons.append(f"none of the {candidate.expected_documents} documents the golden set expects is indexed "
                       f"({e_g}): was it written for other sources, or before a source was renamed?"
                       if len(missing) == candidate.expected_documents else
                       f"{len(missing)} of the {candidate.expected_documents} documents the golden set expects "
                       f"are not indexed now ({e_g})")
    worse: list[dict] = []
    if production is not None:
        before = {q.id: q for q in production.per_query}
        for q in candidate.per_query:
            old = before.get(q.id)
            if old is None:
                continue
            drops = {label(m, k): (old.metrics[m], q.metrics[m]) for m in GATED
                     if q.metrics[m] is not None and old.metrics[m] is not None and q.metrics[m] < old.metrics[m] - _EPS}
            if drops:
                worse.append({
                    "id": q.id, "query": q.query, "tags": ", ".join(q.tags),
                    **{m: f"{a:.3f} -> {b:.3f}" for m, (a, b) in drops.items()},
                    "loss": round(sum(a - b for a, b in drops.values()), 4),
                    "production_top": ", ".join(old.retrieved[:3]), "candidate_top": ", ".join(q.retrieved[:3]),
                })
        worse.sort(key=lambda w: (-w["loss"], w["id"]))
    return GateVerdict(
        passed=not reasons, reasons=reasons, worse=worse, metrics=rows, candidate_version=candidate.version,
        production_version=None if production is None else production.version, floors=dict(floors),
        max_regression=max_regression,
    )


# ---- reports on disk (asset -> check hand-over) -------------------------------------------------


def reports_path(settings: Settings, version: int) -> Path:
    return state.eval_report(settings.state, version)


def save_reports(settings: Settings, candidate: EvalReport, production: EvalReport | None) -> Path:
    path = reports_path(settings, candidate.version)
    payload = {"candidate": candidate.to_dict(), "production": production.to_dict() if production else None}
    atomic_write_text(json.dumps(payload, default=str), path)
    return path


def load_reports(settings: Settings, version: int) -> tuple[EvalReport, EvalReport | None]:
    path = reports_path(settings, version)
    if not path.exists():
        raise FileNotFoundError(f"no evaluation of index version {version}: materialize index_eval first")
    data = json.loads(path.read_text())
    production = data.get("production")
    return EvalReport.from_dict(data["candidate"]), EvalReport.from_dict(production) if production else None


# ---- history (Parquet files, read by DuckDB) ----------------------------------------------------

def history_dir(settings: Settings) -> Path:
    return state.eval_history(settings.state)


def _history_schemas():
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        "eval_runs": pa.schema([("run_id", pa.string()), ("evaluated_at", ts), ("ref", pa.string()),
                                ("version", pa.int64()), ("k", pa.int32()), ("mode", pa.string()),
                                ("golden_file", pa.string()), ("golden_sha256", pa.string()), ("queries", pa.int32()),
                                ("seconds", pa.float64()), ("recorded_at", ts)]),
        "eval_metrics": pa.schema([("run_id", pa.string()), ("evaluated_at", ts), ("ref", pa.string()),
                                   ("version", pa.int64()), ("scope", pa.string()), ("tag", pa.string()),
                                   ("metric", pa.string()), ("value", pa.float64()), ("queries", pa.int32())]),
        "eval_queries": pa.schema([("run_id", pa.string()), ("evaluated_at", ts), ("ref", pa.string()),
                                   ("version", pa.int64()), ("query_id", pa.string()), ("query", pa.string()),
                                   ("tags", pa.list_(pa.string())), *((m, pa.float64()) for m in METRICS),
                                   ("retrieved", pa.list_(pa.string()))]),
    }


def record_history(settings: Settings, reports: Iterable[EvalReport], run_id: str | None = None) -> str:
    """Append the reports to the history (one Parquet file per table); returns the run id used."""
    import pyarrow as pa

    from ingest_platform.storage import atomic_write_parquet

    run_id = run_id or uuid.uuid4().hex
    recorded_at = datetime.now(UTC)
    runs, metrics, queries = [], [], []
    for r in reports:
        at = datetime.fromisoformat(r.at)
        base = {"run_id": run_id, "evaluated_at": at, "ref": r.ref, "version": r.version}
        runs.append({**base, "k": r.k, "mode": r.mode, "golden_file": r.golden_file,
                     "golden_sha256": r.golden_sha256, "queries": r.n_queries, "seconds": r.seconds,
                     "recorded_at": recorded_at})
        groups = [("overall", None, r.overall), *(("tag", t, v) for t, v in r.per_tag.items())]
        for scope, tag, values in groups:
            for name in METRICS:
                if name in values:
                    metrics.append({**base, "scope": scope, "tag": tag, "metric": name, "value": float(values[name]),
                                    "queries": int(values["queries"])})
        for q in r.per_query:
            queries.append({**base, "query_id": q.id, "query": q.query, "tags": q.tags, **q.metrics,
                            "retrieved": q.retrieved})
    part = f"{recorded_at:%Y%m%dT%H%M%S%f}-{run_id[:16]}-{uuid.uuid4().hex[:6]}.parquet"
    for table, rows in (("eval_runs", runs), ("eval_metrics", metrics), ("eval_queries", queries)):
        if rows:
            schema = _history_schemas()[table]
            data = pa.Table.from_pylist([{c: row.get(c) for c in schema.names} for row in rows], schema=schema)
            atomic_write_parquet(data, history_dir(settings) / table / part)
    return run_id


def history_connection(settings: Settings):
    """An in-memory DuckDB connection with the history's tables as views (``eval_runs``,
    ``eval_metrics``, ``eval_queries``); None when nothing was recorded yet. On object storage the
    home's fsspec filesystem is registered with DuckDB, which then reads the files where they are.

    >>> con = history_connection(settings)
    >>> con.execute("SELECT version, metric, value FROM eval_metrics WHERE scope = 'overall'").fetchall()
    """
    import duckdb

    from ingest_platform.storage import is_remote

    folder = history_dir(settings)
    tables = {t: folder / t for t in _history_schemas() if (folder / t).exists() and any((folder / t).glob("*.parquet"))}
    if "eval_runs" not in tables or "eval_metrics" not in tables:
        return None
    con = duckdb.connect()
    if is_remote(folder):
        con.register_filesystem(folder.fs)
    for name, path in tables.items():
        where = f"{folder.protocol}://{path.path}" if is_remote(folder) else str(path)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{where}/*.parquet', union_by_name = true)")
    return con


def history(settings: Settings, limit: int | None = None) -> list[dict]:
    """Overall metrics per evaluated (run, ref, version), oldest first: one dict per row with the
    metric names as keys. Empty when nothing was recorded yet."""
    con = history_connection(settings)
    if con is None:
        return []
    try:
        pivot = ", ".join(f"max(value) FILTER (WHERE metric = '{m}') AS {m}" for m in METRICS)
        sql = f"""
            SELECT r.run_id, r.evaluated_at AS "at", r.recorded_at, r.ref, r.version, r.k, r.mode, r.queries, {pivot}
            FROM eval_runs r JOIN eval_metrics m USING (run_id, ref, version)
            WHERE m.scope = 'overall'
            GROUP BY ALL ORDER BY r.recorded_at, "at", r.version
        """
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        con.close()
    for row in rows:
        for key in ("at", "recorded_at"):
            row[key] = row[key].isoformat() if hasattr(row[key], "isoformat") else row[key]
    return rows[-limit:] if limit else rows


SPARKS = "▁▂▃▄▅▆▇█"
_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":")]


def latest_per_version(rows: Sequence[dict], ref: str | None = "candidate") -> list[dict]:
    """The latest evaluation of each index version (oldest version first), candidate rows only by
    default: production rows repeat an earlier candidate's numbers."""
    latest: dict[int, dict] = {}
    for row in rows:
        if ref is None or row.get("ref") == ref:
            latest[row["version"]] = row
    return [latest[v] for v in sorted(latest)]


def history_trend_md(settings: Settings, metrics: Sequence[str] = GATED, last: int = 12) -> str | None:
    """A small Markdown table (under the UI's 1000-character limit for inline Markdown) with one
    sparkline per metric over the last ``last`` index versions, zoomed to the metric's own range."""
    rows = latest_per_version(history(settings))[-last:]
    if not rows:
        return None
    k = rows[-1]["k"]
    out = [f"| metric | v{rows[0]['version']} → v{rows[-1]['version']} | first | latest |", "|---|---|---|---|"]
    for m in metrics:
        ys = [r.get(m) for r in rows]
        vals = [y for y in ys if y is not None]
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        spark = "".join(" " if y is None else SPARKS[0 if hi == lo else round((y - lo) / (hi - lo) * 7)] for y in ys)
        out.append(f"| {label(m, k)} | `{spark}` | {vals[0]:.3f} | {vals[-1]:.3f} |")
    return "\n".join(out)


def plot_history(settings: Settings, path: str | Path, metrics: Sequence[str] = GATED) -> Path | None:
    """A PNG of the metrics by index version (the latest candidate evaluation of each version):
    the y axis zoomed to the values' range, a distinct marker and line style per metric, every
    version labelled on the x axis. None when there is no history yet."""
    rows = latest_per_version(history(settings))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    versions = [r["version"] for r in rows]
    k = rows[-1]["k"]
    fig = Figure(figsize=(7.0, 3.2), dpi=100)
    ax = fig.subplots()
    xs = list(range(len(versions)))
    values = []
    for (marker, style), metric in zip(_STYLES * 2, metrics):
        ys = [float("nan") if r.get(metric) is None else r[metric] for r in rows]
        values += [y for y in ys if y == y]
        ax.plot(xs, ys, marker=marker, linestyle=style, markersize=6, label=label(metric, k))
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, (hi - lo) * 0.15)
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) + 0.005)
    ax.set_xticks(xs, [f"v{v}" for v in versions], fontsize=8)
    ax.set_xlabel("index version", fontsize=8)
    ax.set_title("golden-set metrics by index version (axis zoomed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


# ---- tables for people --------------------------------------------------------------------------


def tag_rows(candidate: EvalReport, production: EvalReport | None = None) -> list[dict]:
    rows = []
    for tag, values in sorted(candidate.per_tag.items()):
        row: dict[str, Any] = {"tag": tag, "queries": int(values["queries"])}
        for m in GATED:
            row[label(m, candidate.k)] = round(values.get(m, float("nan")), 4)
            if production is not None and tag in production.per_tag and m in production.per_tag[tag]:
                row[f"Δ {label(m, candidate.k)}"] = round(values[m] - production.per_tag[tag][m], 4)
        rows.append(row)
    return rows


def set_rows(candidate: EvalReport, production: EvalReport | None = None) -> list[dict]:
    """One row per golden set (curated, production-derived): the gated metrics and their deltas."""
    rows = []
    for name, values in candidate.per_set.items():
        row: dict[str, Any] = {"set": name, "queries": int(values.get("queries", 0))}
        before = production.per_set.get(name, {}) if production is not None else {}
        for m in GATED:
            if m in values:
                row[label(m, candidate.k)] = round(values[m], 4)
                if m in before:
                    row[f"Δ {label(m, candidate.k)}"] = round(values[m] - before[m], 4)
        rows.append(row)
    return rows


def query_rows(report: EvalReport, only_misses: bool = False) -> list[dict]:
    rows = []
    for q in report.per_query:
        if only_misses and q.metrics["hit_at_k"] and (q.metrics["snippet_hit_at_k"] in (None, 1.0)):
            continue
        rows.append({"id": q.id, "tags": ", ".join(q.tags),
                     **{label(m, report.k): None if q.metrics[m] is None else round(q.metrics[m], 3) for m in METRICS},
                     "missing": ", ".join(q.missing), "query": q.query})
    return rows


# ---- the CLI's `ingest-platform eval` -----------------------------------------------------------


def cli_payload(settings: Settings, golden: str | Path | None = None, ref: str | int = "candidate") -> dict:
    """What ``ingest-platform eval [--golden FILE] --json`` prints: the same metrics and verdict as
    the ``index_eval`` asset and ``eval_gate`` check (nothing is written)."""
    candidate, production = evaluate_candidate_and_production(settings, golden, ref=ref)
    verdict = compare(candidate, production, floors(settings), settings.eval.max_regression)
    return {
        "ref": str(ref), "version": candidate.version, "golden_file": candidate.golden_file,
        "k": candidate.k, "mode": candidate.mode, "queries": candidate.n_queries,
        "metrics": {m: candidate.overall.get(m) for m in METRICS},
        "labels": {m: label(m, candidate.k) for m in METRICS},
        "per_tag": candidate.per_tag,
        "per_set": candidate.per_set,
        "per_query": [{"id": q.id, "query": q.query, "tags": q.tags, **q.metrics, "retrieved": q.retrieved,
                       "missing": q.missing} for q in candidate.per_query],
        "production": None if production is None else {
            "version": production.version, "metrics": {m: production.overall.get(m) for m in METRICS},
            "per_tag": production.per_tag, "per_set": production.per_set},
        "verdict": verdict.to_dict(),
    }
