"""The query function serving apps import: hybrid (vector + BM25, fused by RRF) search over the
``production`` index version, with an access-control prefilter and a citation on every hit.

A ``Retriever`` is long-lived and thread-safe: it opens the index once, notices a promotion by a
``stat`` of the promotion history (no table I/O per query), and answers each query from one table
version it pinned at the start of that query. ``search()`` is the one-off convenience.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ingest_platform.config import PUBLIC_GROUP, Settings, load_settings
from ingest_platform.index import PRODUCTION, IndexError_, IndexStore, quote

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "vector", "keyword"]
MODES = ("hybrid", "vector", "keyword")
# Columns a caller may filter on (equality or IN); anything else is refused, never interpolated.
FILTER_COLUMNS = {"doc_id", "source", "format", "language", "title", "heading_path", "source_uri"}
_RESULT_COLUMNS = [
    "chunk_id", "doc_id", "text", "source_uri", "title", "heading_path", "page_start", "page_end",
    "format", "access_groups",
]


class QueryError(ValueError):
    """A query the API refuses, with a message that says why."""


@dataclass(frozen=True)
class Citation:
    source_uri: str
    title: str | None
    heading_path: str | None
    page: int | None
    page_end: int | None


@dataclass
class Hit:
    chunk_id: str
    doc_id: str
    text: str
    score: float
    ranks: dict[str, int | None]
    citation: Citation

    def to_json(self) -> dict:
        return {
            "chunk_id": self.chunk_id, "doc_id": self.doc_id, "text": self.text, "score": self.score,
            "ranks": self.ranks, "source_uri": self.citation.source_uri, "title": self.citation.title,
            "heading_path": self.citation.heading_path, "page": self.citation.page,
        }


@dataclass
class SearchResult:
    query: str
    mode: str
    index_version: int
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def to_json(self) -> dict:
        return {"index_version": self.index_version, "mode": self.mode, "query": self.query,
                "hits": [h.to_json() for h in self.hits], "timings_ms": self.timings_ms}


class Reranker(Protocol):
    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """Re-scores hits with a sentence-transformers cross-encoder from a local path."""

    def __init__(self, model_path: str, device: str = "cpu"):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model_path, device=device)

    def __call__(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scores = self.model.predict([(query, h.text) for h in hits])
        for hit, score in zip(hits, scores):
            hit.score = float(score)
        return sorted(hits, key=lambda h: -h.score)


# ---- argument checking --------------------------------------------------------------------------


def _clean_query(text: Any, max_chars: int) -> str:
    if not isinstance(text, str):
        raise QueryError(f"query must be a string, not {type(text).__name__}")
    # Control characters carry no meaning for retrieval and upset tokenizers; drop them.
    text = "".join(ch if unicodedata.category(ch)[0] != "C" or ch in "\t\n" else " " for ch in text)
    text = " ".join(text.split())
    if not text:
        raise QueryError("query is empty")
    return text[:max_chars]


def _check_k(k: Any, max_k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise QueryError(f"k must be an integer, not {type(k).__name__}")
    if k < 1:
        raise QueryError(f"k must be at least 1 (got {k})")
    if k > max_k:
        raise QueryError(f"k must be at most {max_k} (got {k})")
    return k


def _groups(groups: Any) -> tuple[str, ...]:
    if groups is None:
        return (PUBLIC_GROUP,)
    if isinstance(groups, str):
        groups = [g for g in groups.split(",") if g]
    if not isinstance(groups, (list, tuple, set, frozenset)) or not all(isinstance(g, str) for g in groups):
        raise QueryError("groups must be a list of strings or one comma-separated string")
    if any("\x00" in g for g in groups):
        raise QueryError("group names may not contain NUL characters")
    return tuple(sorted(set(groups)))


def access_filter(groups: tuple[str, ...]) -> str:
    """The prefilter SQL: each group is a quoted literal, so no group name can widen it."""
    return f"array_has_any(access_groups, [{', '.join(quote(g) for g in groups)}])"


def metadata_filter(filters: dict[str, Any] | None) -> str | None:
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise QueryError(f"filters must be a dict of column -> value(s), not {type(filters).__name__}")
    parts = []
    for column, value in sorted(filters.items(), key=lambda item: str(item[0])):
        if column not in FILTER_COLUMNS:
            raise QueryError(f"cannot filter on {column!r}; allowed: {', '.join(sorted(FILTER_COLUMNS))}")
        values = value if isinstance(value, (list, tuple, set)) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise QueryError(f"filter {column!r} needs a string or a non-empty list of strings")
        if any("\x00" in v for v in values):
            raise QueryError(f"filter {column!r}: values may not contain NUL characters")
        parts.append(f"{column} IN ({', '.join(quote(v) for v in sorted(values))})")
    return " AND ".join(parts)


_PHRASE = re.compile(r'"([^"]+)"')


def keyword_query(text: str):
    """BM25 over ``text`` without LanceDB's query syntax: user text is a plain match query, and
    double-quoted parts must also match as phrases. Operators typed by users are just words."""
    from lancedb.query import BooleanQuery, MatchQuery, Occur, PhraseQuery

    phrases = [p.strip() for p in _PHRASE.findall(text) if p.strip()]
    plain = _PHRASE.sub(" ", text).strip()
    match = MatchQuery(text.replace('"', " "), "text")
    if not phrases:
        return match
    clauses = [(Occur.MUST, PhraseQuery(p, "text")) for p in phrases]
    if plain:
        clauses.append((Occur.SHOULD, match))
    return BooleanQuery(clauses)


# ---- the retriever ------------------------------------------------------------------------------


@dataclass
class _Pinned:
    version: int
    table: Any
    model_spec: str


class Retriever:
    """Long-lived search over one index. Safe to share across threads."""

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        *,
        settings: Settings | None = None,
        ref: str | int = PRODUCTION,
        reranker: Reranker | None = None,
        trace: bool | None = None,
        cache_size: int | None = None,
    ):
        self.settings = settings or load_settings(home=home)
        if home is not None:
            self.settings = self.settings.model_copy(update={"home": Path(home)})
        q = self.settings.query
        self.ref = ref
        self.store = IndexStore(self.settings.lancedb_uri, self.settings.index.table, home=self.settings.state)
        self.reranker = reranker
        if reranker is None and q.reranker_model:
            self.reranker = CrossEncoderReranker(q.reranker_model, self.settings.embedding.device)
        self.trace_enabled = q.trace if trace is None else trace
        self._cache: OrderedDict[tuple, SearchResult] = OrderedDict()
        self._cache_size = q.cache_size if cache_size is None else cache_size
        self._lock = threading.Lock()
        self._trace_lock = threading.Lock()
        self._pinned: _Pinned | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._signal: tuple | None = None

    # -- version tracking --
    def _history_signal(self) -> tuple:
        try:
            st = os.stat(self.store.history_path)
            return (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return (0, 0)

    def _pin(self) -> _Pinned:
        """The table version to answer from. Re-resolved only when the promotion history changed
        (or for a non-tag ref, once)."""
        signal = self._history_signal()
        pinned = self._pinned
        if pinned is not None and (signal == self._signal or not isinstance(self.ref, str)):
            return pinned
        with self._lock:
            if self._pinned is not None and signal == self._signal:
                return self._pinned
            version = self.store.version_of(self.ref)
            if self._pinned is None or self._pinned.version != version:
                table = self.store.checkout(version)
                self._pinned = _Pinned(version, table, self.store.model(table)[1])
            # A promotion records its move before it moves the tag. Caught in between, the tag
            # still names the old version: look again on the next query rather than settle on
            # this history (which will not change again) and serve the old version until the
            # next promotion.
            if self.ref != PRODUCTION or self._last_recorded_version() in (None, version):
                self._signal = signal
            return self._pinned

    def _last_recorded_version(self) -> int | None:
        """``to_version`` of the last line of the promotion history (None if unreadable)."""
        try:
            with open(self.store.history_path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
                lines = [line for line in fh.read().splitlines() if line.strip()]
            return int(json.loads(lines[-1])["to_version"]) if lines else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def refresh(self) -> int:
        self._signal = None
        return self._pin().version

    @property
    def version(self) -> int:
        return self._pin().version

    # -- search --
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        filters: dict[str, Any] | None = None,
        groups: list[str] | str | None = None,
    ) -> SearchResult:
        q = self.settings.query
        t0 = time.perf_counter()
        text = _clean_query(query, q.max_query_chars)
        k = _check_k(k, q.max_k)
        if mode not in MODES:
            raise QueryError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        caller = _groups(groups)
        where_meta = metadata_filter(filters)
        pinned = self._pin()
        key = (pinned.version, text, k, mode, where_meta, caller)
        if self._cache_size:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
            if hit is not None:
                result = SearchResult(text, mode, pinned.version, list(hit.hits), {"total": _ms(t0)}, cached=True)
                self._trace(result, k, filters, caller)
                return result
        timings: dict[str, float] = {}
        hits = [] if not caller else self._run(pinned, text, k, mode, where_meta, caller, timings)
        if self.reranker is not None and hits:
            t = time.perf_counter()
            hits = self.reranker(text, hits)[:k]
            timings["rerank"] = _ms(t)
        timings["total"] = _ms(t0)
        result = SearchResult(text, mode, pinned.version, hits, timings)
        if self._cache_size:
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        self._trace(result, k, filters, caller)
        return result

    def _run(self, pinned: _Pinned, text, k, mode, where_meta, caller, timings) -> list[Hit]:
        q = self.settings.query
        where = access_filter(caller) + (f" AND {where_meta}" if where_meta else "")
        depth = max(k, q.candidates) if mode == "hybrid" else k
        ranked: dict[str, list[dict]] = {}
        keyword = None
        if mode == "hybrid":
            # BM25 runs on a worker thread while the query is embedded and the vectors searched:
            # LanceDB and torch release the GIL, so hybrid latency is the longer path, not the sum.
            keyword = self._executor().submit(self._timed_keyword, pinned.table, text, where, depth)
        if mode in ("vector", "hybrid"):
            from ingest_platform.embedding import get_embedder

            t = time.perf_counter()
            vec = get_embedder(pinned.model_spec, self.settings.embedding.device).encode_query(text)
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            ranked["vector"] = (
                pinned.table.search(vec, vector_column_name="vector").distance_type("cosine")
                .where(where, prefilter=True).select([*_RESULT_COLUMNS, "_distance"]).limit(depth)
                .to_arrow().to_pylist()
            )
            timings["vector"] = _ms(t)
        if keyword is not None:
            ranked["keyword"], timings["keyword"] = keyword.result()
        elif mode == "keyword":
            ranked["keyword"], timings["keyword"] = self._timed_keyword(pinned.table, text, where, depth)
        t = time.perf_counter()
        hits = fuse(ranked, {"vector": q.vector_weight, "keyword": q.keyword_weight}, q.rrf_k, k, method=q.fusion)
        timings["fuse"] = _ms(t)
        return hits

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="retriever-keyword")
        return self._pool

    def _timed_keyword(self, table, text: str, where: str, depth: int) -> tuple[list[dict], float]:
        t = time.perf_counter()
        rows = self._keyword(table, text, where, depth)
        return rows, _ms(t)

    @staticmethod
    def _keyword(table, text: str, where: str, depth: int) -> list[dict]:
        try:
            return (
                table.search(keyword_query(text), query_type="fts").where(where, prefilter=True)
                .select([*_RESULT_COLUMNS, "_score"]).limit(depth).to_arrow().to_pylist()
            )
        except ValueError as exc:
            # A query made only of stop words or punctuation has no terms: no keyword hits.
            if "no terms" in str(exc).lower() or "empty" in str(exc).lower():
                return []
            raise

    # -- tracing --
    def _trace(self, result: SearchResult, k: int, filters, caller) -> None:
        if not self.trace_enabled:
            return
        record = {
            "at": datetime.now(UTC).isoformat(), "query": result.query, "mode": result.mode, "k": k,
            "filters": json.dumps(filters, sort_keys=True, default=str) if filters else None,
            "groups": list(caller), "index_version": result.index_version, "cached": result.cached,
            "hit_ids": [h.chunk_id for h in result.hits], "timings_ms": result.timings_ms,
        }
        folder = self.settings.state / "traces"
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._trace_lock:
            folder.mkdir(parents=True, exist_ok=True)
            # One O_APPEND write per line: lines from several processes never interleave.
            with open(folder / f"queries-{datetime.now(UTC):%Y%m%d}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(line)


# Each retriever's own relevance score, higher is better: cosine similarity, BM25.
_SCORE = {"vector": lambda row: 1.0 - row["_distance"], "keyword": lambda row: row["_score"]}


def _standardised(name: str, results: list[dict]) -> tuple[list[float], float]:
    """The list's scores as z-scores over the list, and the z-score of its last candidate (what a
    chunk the list did not return gets: it ranked below every candidate)."""
    get = _SCORE.get(name)
    if get is None or any(get(row) is None for row in results):  # no usable scores: by rank
        raw = [-float(rank) for rank in range(len(results))]
    else:
        raw = [float(get(row)) for row in results]
    mean = sum(raw) / len(raw)
    sd = (sum((x - mean) ** 2 for x in raw) / len(raw)) ** 0.5 or 1.0
    z = [(x - mean) / sd for x in raw]
    return z, min(z)


def fuse(ranked: dict[str, list[dict]], weights: dict[str, float], rrf_k: int, k: int,
         method: str = "zscore") -> list[Hit]:
    """Merge ranked lists of chunks into ``k`` hits.

    ``zscore`` (the default, tuned on SciFact's train split, see ``benchmarks/README.md``): each
    list's scores are standardised over its own candidates (cosine similarity and BM25 live on
    unrelated scales; z-scores make them comparable per query) and the fused score is
    ``sum(w * z)``; a chunk missing from a list counts as that list's last candidate.
    ``rrf``: weighted reciprocal rank fusion, ``sum(w / (rrf_k + rank))`` with ranks from 1.
    A single list keeps its order either way.
    """
    if method not in ("zscore", "rrf"):
        raise ValueError(f"unknown fusion method {method!r}: use 'zscore' or 'rrf'")
    scores: dict[str, float] = {}
    rows: dict[str, dict] = {}
    ranks: dict[str, dict[str, int | None]] = {}
    floors: dict[str, float] = {}
    for name, results in ranked.items():
        w = weights.get(name, 1.0)
        if method == "zscore" and results:
            z, floors[name] = _standardised(name, results)
            contributions = [w * x for x in z]
        else:
            contributions = [w / (rrf_k + rank) for rank in range(1, len(results) + 1)]
        for rank, (row, add) in enumerate(zip(results, contributions), start=1):
            cid = row["chunk_id"]
            if cid in ranks and ranks[cid][name] is not None:
                continue  # a chunk listed twice by one retriever counts once, at its best rank
            rows.setdefault(cid, row)
            ranks.setdefault(cid, {n: None for n in ranked})[name] = rank
            scores[cid] = scores.get(cid, 0.0) + add
    if method == "zscore":
        for cid, got in ranks.items():
            for name, rank in got.items():
                if rank is None and name in floors:
                    scores[cid] += weights.get(name, 1.0) * floors[name]
    order = sorted(scores, key=lambda c: (-scores[c], c))[:k]
    return [
        Hit(
            chunk_id=c, doc_id=rows[c]["doc_id"], text=rows[c]["text"], score=round(scores[c], 8),
            ranks=ranks[c],
            citation=Citation(rows[c]["source_uri"], rows[c]["title"], rows[c]["heading_path"],
                              rows[c]["page_start"], rows[c]["page_end"]),
        )
        for c in order
    ]


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


_default: dict[str, Retriever] = {}
_default_lock = threading.Lock()


def search(
    query: str,
    k: int = 10,
    *,
    mode: Mode = "hybrid",
    filters: dict[str, Any] | None = None,
    groups: list[str] | str | None = None,
    home: str | os.PathLike | None = None,
) -> SearchResult:
    """One-off search of the production index; reuses one Retriever per home within a process."""
    settings = load_settings(home=home)
    key = str(Path(settings.home).resolve())
    with _default_lock:
        retriever = _default.get(key)
        if retriever is None:
            retriever = _default[key] = Retriever(settings=settings)
    return retriever.search(query, k, mode=mode, filters=filters, groups=groups)


__all__ = ["search", "Retriever", "SearchResult", "Hit", "Citation", "QueryError", "IndexError_", "fuse"]
