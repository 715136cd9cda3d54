"""The query function serving apps import: hybrid (vector + BM25, fused by RRF) search over the
``production`` index version, with an access-control prefilter and a citation on every hit.

A ``Retriever`` is long-lived and thread-safe: it opens the index once, reads the ``production``
tag from the index at most every ``[query] refresh_interval_s`` (and at once after a promotion on
this machine), and answers each query from one table version it pinned at the start of that query. ``search()`` is the one-off convenience.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ingest_platform import rewrite, state, traces
from ingest_platform.config import PUBLIC_GROUP, Settings, load_settings
from ingest_platform.dedupe import GUARD_COLUMNS, collapse_hits, hit_flags
from ingest_platform.index import PRODUCTION, IndexError_, IndexStore, quote
from ingest_platform.rewrite import GlossaryRewriter, QueryRewriter
from ingest_platform.semantic_cache import SemanticCache
from ingest_platform.traces import new_trace_id

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
    # What the guardrails found in the chunk (``ingest_platform.guardrails.RISK_TYPES``, plus
    # ``superseded`` when a newer version of the document exists); empty when clean. A serving app
    # can drop or fence a flagged passage.
    risk_flags: list[str] = field(default_factory=list)
    dup_group: str | None = None  # near-duplicate group (its representative document), if any
    superseded_by: str | None = None  # the newer document that supersedes this one, if any

    def to_json(self) -> dict:
        return {
            "chunk_id": self.chunk_id, "doc_id": self.doc_id, "text": self.text, "score": self.score,
            "ranks": self.ranks, "source_uri": self.citation.source_uri, "title": self.citation.title,
            "heading_path": self.citation.heading_path, "page": self.citation.page,
            "risk_flags": list(self.risk_flags), "dup_group": self.dup_group, "superseded_by": self.superseded_by,
        }


@dataclass
class SearchResult:
    query: str
    mode: str
    index_version: int
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    # The id of this answer's trace line: what feedback (``Retriever.feedback``) points at.
    trace_id: str = ""
    # Cosine similarity of the best vector candidate (None in keyword mode): unlike fused scores,
    # which are relative to the query's own candidates, an absolute sign of an unanswered query.
    top_similarity: float | None = None
    # What the query rewriter made of the query, per side ({"vector": ..., "keyword": ...}); None
    # when there is no rewriter or it changed nothing.
    rewritten: dict[str, str] | None = None

    def to_json(self) -> dict:
        return {"trace_id": self.trace_id, "index_version": self.index_version, "mode": self.mode,
                "query": self.query, "hits": [h.to_json() for h in self.hits], "timings_ms": self.timings_ms,
                **({"rewritten": self.rewritten} if self.rewritten else {})}


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


def _require_operator(settings: Settings, ref: str | int, operator: bool) -> None:
    """Reading anything but ``production`` (an old or unpromoted version, which may still hold
    revoked or deleted documents) is an operator action: the caller must say so, and be the owner
    of the state folder or listed in ``[query] operators``."""
    from ingest_platform.errors import OperatorOnly

    if not operator:
        raise OperatorOnly(f"reading version {ref!r} is an operator action (it may hold revoked or deleted "
                           "documents): serving reads production; pass operator=True / --operator")
    import getpass

    user = getpass.getuser()
    owner = _owns(settings)
    if not owner and user not in settings.query.operators:
        raise OperatorOnly(f"user {user!r} may not read version {ref!r}: not the owner of {settings.state} "
                           "and not in [query] operators (on object storage: may not write the home)")


def _owns(settings: Settings) -> bool:
    """Whether this process owns the state: locally, the OS user owns the folder; on object
    storage, where there is no owner, it may write there (serving replicas hold read-only
    credentials), checked by writing and removing a marker object."""
    if state.is_local(settings.home):
        try:
            return os.stat(settings.state).st_uid == os.getuid()
        except OSError:
            return False
    marker = settings.state / f".operator-{uuid.uuid4().hex[:8]}"
    try:
        marker.write_text("operator check")
        marker.unlink()
        return True
    except Exception:  # noqa: BLE001 - any refusal by the store means: not allowed to write
        return False


@dataclass
class _Pinned:
    version: int
    table: Any
    model_spec: str
    columns: tuple[str, ...] = tuple(_RESULT_COLUMNS)  # plus the guard columns the version has
    memory: _MemoryVectors | None = None  # loaded on the first vector query when small enough
    memory_checked: bool = False


class _MemoryVectors:
    """Exact cosine search over one pinned (immutable) version's vectors held in memory.

    Why: LanceDB's brute-force search reads and filters the version's rows on every query (about
    half of a hybrid query's time on a 10,000-chunk index on 2 cores), while a matrix product over
    the same vectors takes well under a millisecond. The prefilter keeps LanceDB's semantics: the
    rows a ``where`` clause admits are asked of LanceDB (the same SQL) once per distinct clause and
    kept as positions. Results are those of LanceDB's flat cosine search: same rows, same
    ``_distance`` (1 - cosine), up to float rounding.
    """

    MASKS = 256  # distinct (groups, filters) clauses remembered per version

    def __init__(self, table, columns: tuple[str, ...]):
        import numpy as np

        data = table.search().with_row_id(True).select([*columns, "vector"]).limit(None).to_arrow()
        vectors = data["vector"].combine_chunks()
        matrix = vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(data), vectors.type.list_size)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)
        rowids = data["_rowid"].to_numpy()
        self._order = np.argsort(rowids)
        self._sorted_ids = rowids[self._order]
        self.rows = data.drop_columns(["vector", "_rowid"]).combine_chunks()
        # What fusion needs of a candidate; the other columns are read for the winners only.
        self._ids = {name: self.rows[name].to_numpy(zero_copy_only=False) for name in ("chunk_id", "doc_id")}
        self.table = table
        self._masks: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _admitted(self, where: str):
        """Positions (into ``matrix``) of the rows ``where`` admits, asked of LanceDB once."""
        import numpy as np

        with self._lock:
            found = self._masks.get(where)
            if found is not None:
                self._masks.move_to_end(where)
                return found
        ids = (self.table.search().where(where, prefilter=True).with_row_id(True).select(["chunk_id"])
               .limit(None).to_arrow()["_rowid"].to_numpy())
        positions = np.sort(self.positions(ids))
        with self._lock:
            self._masks[where] = positions
            while len(self._masks) > self.MASKS:
                self._masks.popitem(last=False)
        return positions

    def positions(self, rowids):
        """Positions (into ``matrix`` and ``rows``) of LanceDB row ids of this version."""
        import numpy as np

        at = np.minimum(np.searchsorted(self._sorted_ids, rowids), len(self._sorted_ids) - 1)
        if len(at) and not np.array_equal(self._sorted_ids[at], rowids):
            raise IndexError_("a row id is not in the pinned version's rows held in memory")
        return self._order[at]

    def search(self, vector, where: str, depth: int) -> list[dict]:
        """The ``depth`` nearest admitted rows, best first: ``chunk_id``, ``doc_id``, ``_distance``
        and their position (``_pos``); ``hydrate`` adds the other columns to the ones kept."""
        import numpy as np

        positions = self._admitted(where)
        if not len(positions) or depth <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        # All rows, then the admitted: no copy of the matrix. einsum, not ``@``: OpenBLAS splits the
        # product over every core, and its threads then busy-wait for more work on the cores that
        # BM25 (on the other thread) and the next query's embedding need; on 2 cores both ran at
        # half speed. einsum runs on this thread only (``benchmarks/README.md``).
        sims = np.einsum("ij,j->i", self.matrix, q)[positions]
        n = min(depth, len(sims))
        best = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
        best = best[np.lexsort((positions[best], -sims[best]))]
        chunk_ids, doc_ids = self._ids["chunk_id"], self._ids["doc_id"]
        return [{"chunk_id": chunk_ids[p], "doc_id": doc_ids[p], "_distance": float(1.0 - sim), "_pos": int(p)}
                for p, sim in zip(positions[best], sims[best])]

    def hydrate(self, rows: list[dict]) -> None:
        """Fill in every column of ``rows`` (candidates with a ``_pos``), in place."""
        todo = [row for row in rows if "_pos" in row and "text" not in row]
        if todo:
            for row, full in zip(todo, self.rows.take([row["_pos"] for row in todo]).to_pylist()):
                row.update(full)


class Retriever:
    """Long-lived search over one index. Safe to share across threads.

    Parameters beyond the settings: ``ref`` (tag or version to serve), ``reranker``
    (``f(query, hits) -> hits``), ``trace`` (write a trace line per query; default ``[query] trace``),
    ``cache_size`` (exact-match result cache), ``rewriter`` (``f(query) -> str | rewrite.Rewrite``;
    default the ``[query] glossary`` rewriter when one is configured).
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        *,
        settings: Settings | None = None,
        ref: str | int = PRODUCTION,
        reranker: Reranker | None = None,
        trace: bool | None = None,
        cache_size: int | None = None,
        operator: bool = False,
        rewriter: QueryRewriter | None = None,
    ):
        self.settings = settings or load_settings(home=home)
        if home is not None:
            self.settings = self.settings.model_copy(update={"home": Path(home)})
        q = self.settings.query
        if ref != PRODUCTION:
            _require_operator(self.settings, ref, operator)
        self.ref = ref
        self.store = IndexStore(self.settings.lancedb_uri, self.settings.index.table, home=self.settings.state)
        self.reranker = reranker
        if reranker is None and q.reranker_model:
            self.reranker = CrossEncoderReranker(q.reranker_model, self.settings.embedding.device)
        self.trace_enabled = q.trace if trace is None else trace
        # f(query) -> str | Rewrite (ingest_platform/rewrite.py); default: the [query] glossary.
        self.rewriter = rewriter
        if rewriter is None and q.glossary:
            self.rewriter = GlossaryRewriter(q.glossary)
        self._cache: OrderedDict[tuple, SearchResult] = OrderedDict()
        self._cache_size = q.cache_size if cache_size is None else cache_size
        self._semantic = (SemanticCache(q.semantic_cache_threshold, self._cache_size or q.cache_size)
                          if q.semantic_cache_threshold else None)
        self._lock = threading.Lock()
        self._trace_lock = threading.Lock()
        self._pinned: _Pinned | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._signal: tuple | None = None
        self._next_check = 0.0  # time.monotonic() after which the tag is read again

    # -- version tracking --
    def _history_signal(self) -> tuple:
        """A cheap local hint that a promotion happened on this machine: the promotion history's
        size and mtime (constant when the home is elsewhere: object storage, another host)."""
        if not state.is_local(self.store.home):
            return (0, 0)
        try:
            st = os.stat(self.store.history_path)
            return (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return (0, 0)

    def _pin(self) -> _Pinned:
        """The table version to answer from: the ``production`` tag (or the ref's), read from the
        index itself at most every ``[query] refresh_interval_s``, so a replica that shares nothing
        but the store follows promotions; a promotion on this machine (the history's stat changes)
        is looked at on the next query. A version number is resolved once."""
        pinned = self._pinned
        if pinned is not None and not isinstance(self.ref, str):
            return pinned
        signal = self._history_signal()
        now = time.monotonic()
        if pinned is not None and signal == self._signal and now < self._next_check:
            return pinned
        with self._lock:
            if self._pinned is not None and signal == self._signal and now < self._next_check:
                return self._pinned
            version = self.store.version_of(self.ref)  # the tag, as the index has it now
            self._next_check = now + self.settings.query.refresh_interval_s
            if self._pinned is None or self._pinned.version != version:
                # A fresh connection per version: the old one, and the index files of the old
                # version it kept open, are released with it (one leaked per promotion otherwise).
                self.store = IndexStore(self.settings.lancedb_uri, self.settings.index.table, home=self.settings.state)
                table = self.store.checkout(version)
                names = set(table.schema.names)
                self._pinned = _Pinned(version, table, self.store.model(table)[1],
                                       (*_RESULT_COLUMNS, *(c for c in GUARD_COLUMNS if c in names)))
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
        """Read the tag now (instead of at the next interval); returns the version pinned."""
        self._signal = None
        self._next_check = 0.0
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
        collapse_duplicates: bool | None = None,
        include_superseded: bool | None = None,
    ) -> SearchResult:
        """The ``k`` best chunks for ``query`` that the caller's ``groups`` may see.

        Parameters
        ----------
        query: the user's text (control characters dropped, capped at ``[query] max_query_chars``).
        k: hits to return, 1 to ``[query] max_k``.
        mode: ``"hybrid"`` (vector + BM25, fused), ``"vector"`` or ``"keyword"``.
        filters: column -> value or list of values, e.g. ``{"format": ["pdf", "md"]}``.
        groups: the caller's access groups (default ``["public"]``).
        collapse_duplicates: one hit per near-duplicate document group (default ``[guardrails]
            collapse_near_duplicates``, on).
        include_superseded: keep chunks of documents a newer version supersedes (default off).

        Returns
        -------
        SearchResult: hits best first (each with its ``risk_flags``), the index version answered
        from, timings, and the ``trace_id`` of the trace line written for this answer (what
        feedback points at). A refused or failed query is traced too (with its error), then raises.

        Example
        -------
        >>> result = Retriever(home=".ingest-state").search("refund window", k=3)
        >>> result.trace_id, [h.doc_id for h in result.hits]
        """
        trace_id = new_trace_id()
        try:
            return self._search(query, k, mode, filters, groups, trace_id, collapse_duplicates, include_superseded)
        except Exception as exc:
            self._trace_error(trace_id, query, k, mode, filters, groups, exc)
            raise

    def _search(self, query, k, mode, filters, groups, trace_id: str, collapse_duplicates: bool | None = None,
                include_superseded: bool | None = None) -> SearchResult:
        q = self.settings.query
        g = self.settings.guardrails
        collapse = g.collapse_near_duplicates if collapse_duplicates is None else bool(collapse_duplicates)
        superseded = g.include_superseded if include_superseded is None else bool(include_superseded)
        t0 = time.perf_counter()
        text = _clean_query(query, q.max_query_chars)
        k = _check_k(k, q.max_k)
        if mode not in MODES:
            raise QueryError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        caller = _groups(groups)
        where_meta = metadata_filter(filters)
        pinned = self._pin()
        if not superseded and "superseded_by" in pinned.columns:
            where_meta = " AND ".join(w for w in (where_meta, "superseded_by IS NULL") if w)
        key = (pinned.version, text, k, mode, where_meta, caller, collapse)
        if self._cache_size:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
            if hit is not None:
                result = SearchResult(text, mode, pinned.version, list(hit.hits), {"total": _ms(t0)}, cached=True,
                                      trace_id=trace_id, top_similarity=hit.top_similarity, rewritten=hit.rewritten)
                self._trace(result, k, filters, caller)
                return result
        timings: dict[str, float] = {}
        # Collapsing near-duplicates drops hits: fetch more, keep the best of each group.
        fetch = min(q.max_k, k * 3 + 10) if collapse and "dup_group" in pinned.columns else k
        signals: dict[str, Any] = {}
        rw = rewrite.apply(self.rewriter, text) if self.rewriter is not None else None
        scope = vec = None
        if self._semantic is not None and mode != "keyword" and caller:
            scope = (pinned.version, k, mode, where_meta, caller, collapse)
            vec = self._encoder(pinned).encode_query(rw.vector if rw else text)  # memoised for _run
            found = self._semantic.get(scope, vec)
            if found is not None:
                near, source, similarity = found
                result = SearchResult(text, mode, pinned.version, list(near.hits), {"total": _ms(t0)}, cached=True,
                                      trace_id=trace_id, top_similarity=near.top_similarity, rewritten=near.rewritten)
                self._trace(result, k, filters, caller, {"semantic_cache": {"query": source, "similarity": round(similarity, 4)}})
                return result
        hits = [] if not caller else self._run(pinned, rw.vector if rw else text, fetch, mode, where_meta, caller, timings,
                                              signals=signals, keyword_text=rw.keyword if rw else None)
        hits = collapse_hits(hits, k, collapse_near_duplicates=collapse)
        if self.reranker is not None and hits:
            t = time.perf_counter()
            hits = self.reranker(text, hits)[:k]
            timings["rerank"] = _ms(t)
        timings["total"] = _ms(t0)
        result = SearchResult(text, mode, pinned.version, hits, timings, trace_id=trace_id,
                              top_similarity=signals.get("top_similarity"),
                              rewritten={"vector": rw.vector, "keyword": rw.keyword} if rw else None)
        if self._cache_size:
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if scope is not None:
            self._semantic.put(scope, text, vec, result)
        self._trace(result, k, filters, caller)
        return result

    def _run(self, pinned: _Pinned, text, k, mode, where_meta, caller, timings, *, signals=None,
             keyword_text: str | None = None) -> list[Hit]:
        q = self.settings.query
        where = access_filter(caller) + (f" AND {where_meta}" if where_meta else "")
        depth = max(k, q.candidates) if mode == "hybrid" else k
        # The vector side may fetch fewer than k: fusion fills the rest from the keyword candidates.
        vector_depth = q.vector_candidates if mode == "hybrid" and q.vector_candidates else depth
        ranked: dict[str, list[dict]] = {}
        keyword = None
        # A version small enough to hold in memory: the candidates are ids and scores (BM25 reads
        # no text for them, half its time), and the winners' columns are read from memory.
        memory = self._memory(pinned) if mode in ("vector", "hybrid") else None
        columns = ("chunk_id", "doc_id") if memory is not None else pinned.columns
        if mode == "hybrid":
            # BM25 runs on a worker thread while the query is embedded and the vectors searched:
            # LanceDB and the encoders release the GIL, so with a core to spare hybrid latency is
            # the longer path, not the sum (nothing here may start BLAS threads: see
            # ``_MemoryVectors.search``).
            keyword = self._executor().submit(self._timed_keyword, pinned.table, keyword_text or text, where, depth,
                                              columns, memory is not None)
        if mode in ("vector", "hybrid"):
            t = time.perf_counter()
            vec = self._encoder(pinned).encode_query(text)
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            if memory is not None:
                ranked["vector"] = memory.search(vec, where, vector_depth)
            else:
                ranked["vector"] = (
                    pinned.table.search(vec, vector_column_name="vector").distance_type("cosine")
                    .where(where, prefilter=True).select([*pinned.columns, "_distance"]).limit(vector_depth)
                    .to_arrow().to_pylist()
                )
            timings["vector"] = _ms(t)
            if signals is not None and ranked["vector"]:  # for the trace: an absolute relevance signal
                signals["top_similarity"] = round(1.0 - ranked["vector"][0]["_distance"], 4)
        if keyword is not None:
            ranked["keyword"], timings["keyword"] = keyword.result()
            if memory is not None:
                rows = ranked["keyword"]
                for row, pos in zip(rows, memory.positions([row.pop("_rowid") for row in rows])):
                    row["_pos"] = int(pos)
        elif mode == "keyword":
            ranked["keyword"], timings["keyword"] = self._timed_keyword(pinned.table, keyword_text or text, where, depth,
                                                                        pinned.columns)
        t = time.perf_counter()
        winners = _fused(ranked, {"vector": q.vector_weight, "keyword": q.keyword_weight}, q.rrf_k, k, q.fusion,
                         q.aggregate)
        if memory is not None:
            memory.hydrate([row for row, _, _ in winners])
        hits = [_hit(*winner) for winner in winners]
        _attach_guard_fields(hits, [row for row, _, _ in winners])
        timings["fuse"] = _ms(t)
        return hits

    def _memory(self, pinned: _Pinned) -> _MemoryVectors | None:
        """The pinned version's vectors in memory, when it has at most ``[query]
        memory_search_max_rows`` rows (loaded once per version, on its first vector query)."""
        if not pinned.memory_checked:
            with self._lock:
                if not pinned.memory_checked:
                    limit = self.settings.query.memory_search_max_rows
                    if limit and pinned.table.count_rows() <= limit:
                        pinned.memory = _MemoryVectors(pinned.table, pinned.columns)
                    pinned.memory_checked = True
        return pinned.memory

    def _encoder(self, pinned: _Pinned):
        """The query encoder of the pinned version's model ([query] encoder: torch or onnx)."""
        from ingest_platform.query_encoder import get_query_encoder

        return get_query_encoder(pinned.model_spec, self.settings.embedding.device, self.settings.query.encoder,
                                 str(state.models()))

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="retriever-keyword")
        return self._pool

    def _timed_keyword(self, table, text: str, where: str, depth: int, columns: tuple[str, ...] = tuple(_RESULT_COLUMNS),
                       row_ids: bool = False) -> tuple[list[dict], float]:
        t = time.perf_counter()
        rows = self._keyword(table, text, where, depth, columns, row_ids)
        return rows, _ms(t)

    @staticmethod
    def _keyword(table, text: str, where: str, depth: int, columns: tuple[str, ...] = tuple(_RESULT_COLUMNS),
                 row_ids: bool = False) -> list[dict]:
        try:
            return (
                table.search(keyword_query(text), query_type="fts").where(where, prefilter=True).with_row_id(row_ids)
                .select([*columns, "_score"]).limit(depth).to_arrow().to_pylist()
            )
        except ValueError as exc:
            # A query made only of stop words or punctuation has no terms: no keyword hits.
            if "no terms" in str(exc).lower() or "empty" in str(exc).lower():
                return []
            raise

    # -- serving helpers (the work is done in their own modules) --
    def feedback(self, trace_id: str, *, doc_id: str, relevant: bool, note: str | None = None,
                 judge: str | None = None):
        """Record whether ``doc_id`` answers the query of ``trace_id`` (append-only, with who and when).

        Parameters
        ----------
        trace_id: a ``SearchResult.trace_id`` (the query must have been traced).
        doc_id: the judged document; it need not be among the hits, but must be in the index
            version that answered and visible to the query's groups.
        relevant: True when the document answers the query.
        note: free text for the reviewer (at most 2,000 characters).
        judge: who judged (default: ``INGEST_PLATFORM_JUDGE`` or the operating-system user).

        Returns
        -------
        feedback.Feedback: the stored judgement. Raises ``feedback.FeedbackError`` (a
        ``ValueError``) with a one-line reason for an unknown trace or document.

        Example
        -------
        >>> r = retriever.search("refund window")
        >>> retriever.feedback(r.trace_id, doc_id=r.hits[0].doc_id, relevant=True)
        """
        from ingest_platform import feedback

        return feedback.record(self.settings.state, self.store, trace_id, doc_id, relevant, note, judge)

    def context(self, query: str, max_tokens: int = 1024, *, k: int = 20, mode: Mode = "hybrid",
                filters: dict[str, Any] | None = None, groups: list[str] | str | None = None,
                count_tokens=None):
        """The hits for ``query`` packed into ``max_tokens`` tokens, ready to hand to a model.

        Overlapping chunks of one document are merged into one passage, duplicate texts are kept
        once, and each passage carries a numbered citation. See ``ingest_platform.context``.

        Parameters
        ----------
        query, mode, filters, groups: as for ``search``.
        max_tokens: the budget for the whole context text, headers included.
        k: hits retrieved to choose from (more than fit, so the budget is filled).
        count_tokens: ``f(texts) -> list[int]`` counting in the generator's tokenizer; default the
            embedding model's own tokenizer.

        Returns
        -------
        context.Context: ``text`` (the packed passages), ``passages`` (each with its citation and
        chunk ids), ``tokens``, ``trace_id`` and ``index_version``.

        Example
        -------
        >>> ctx = retriever.context("refund window for annual plans", max_tokens=500)
        >>> prompt = f"Answer from these sources:\n{ctx.text}\n\nQuestion: ..."
        """
        from ingest_platform import context as ctx

        # Near-duplicates are not collapsed here: the packer keeps their text once and names the
        # other documents in ``also_in``, so the model sees every source that says it.
        result = self.search(query, k, mode=mode, filters=filters, groups=groups, collapse_duplicates=False)
        counter = count_tokens or ctx.tokenizer_counter(self._pin().model_spec)
        return ctx.pack(result, max_tokens, counter)

    # -- tracing (the line format and files: ingest_platform/traces.py) --
    def _trace(self, result: SearchResult, k: int, filters, caller, extra: dict | None = None) -> None:
        if not self.trace_enabled:
            return
        record = {
            "trace_id": result.trace_id, "at": datetime.now(UTC).isoformat(), "query": result.query,
            "mode": result.mode, "k": k,
            "filters": json.dumps(filters, sort_keys=True, default=str) if filters else None,
            "groups": list(caller), "index_version": result.index_version, "cached": result.cached,
            "hit_ids": [h.chunk_id for h in result.hits], "hit_doc_ids": [h.doc_id for h in result.hits],
            "hit_scores": [h.score for h in result.hits], "top_similarity": result.top_similarity,
            "rewritten": result.rewritten,
            "timings_ms": result.timings_ms, "error": None, **(extra or {}),
        }
        with self._trace_lock:
            traces.append(self.settings.state, record)

    def _trace_error(self, trace_id: str, query, k, mode, filters, groups, exc: Exception) -> None:
        """A refused query (``QueryError``: bad input) or a failed one (anything else), traced so the
        error rate is measured where it happens."""
        if not self.trace_enabled:
            return
        record = {
            "trace_id": trace_id, "at": datetime.now(UTC).isoformat(),
            "query": query[:1000] if isinstance(query, str) else repr(query)[:200], "mode": str(mode), "k": k,
            "filters": json.dumps(filters, sort_keys=True, default=str) if filters else None,
            "groups": groups if isinstance(groups, (list, str)) else None, "hit_ids": [],
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "error_kind": "refused" if isinstance(exc, QueryError) else "failed",
        }
        try:
            with self._trace_lock:
                traces.append(self.settings.state, record)
        except OSError:  # tracing must never replace the caller's error with its own
            log.warning("could not write the trace of a failed query", exc_info=True)


# Each retriever's own relevance score, higher is better: cosine similarity, BM25.
_SCORE = {"vector": lambda row: 1.0 - row["_distance"], "keyword": lambda row: row["_score"]}
FUSIONS = ("zscore", "minmax", "rrf")
AGGREGATES = ("chunk", "document")


def _normalised(name: str, results: list[dict], method: str) -> list[float]:
    """The list's scores on a common scale: z-scores or min-max over the list's own candidates
    (cosine similarity and BM25 live on unrelated scales); by rank when a list has no scores."""
    get = _SCORE.get(name)
    if get is None or any(get(row) is None for row in results):
        raw = [-float(rank) for rank in range(len(results))]
    else:
        raw = [float(get(row)) for row in results]
    if method == "minmax":
        lo, hi = min(raw), max(raw)
        return [(x - lo) / (hi - lo) if hi > lo else 1.0 for x in raw]
    mean = sum(raw) / len(raw)
    sd = (sum((x - mean) ** 2 for x in raw) / len(raw)) ** 0.5 or 1.0
    return [(x - mean) / sd for x in raw]


def fuse(ranked: dict[str, list[dict]], weights: dict[str, float], rrf_k: int, k: int,
         method: str = "zscore", aggregate: str = "chunk") -> list[Hit]:
    """Merge ranked lists of chunks into ``k`` hits.

    Parameters
    ----------
    ranked:
        Per retriever (``"vector"``, ``"keyword"``), its candidate rows, best first.
    weights:
        Per retriever, the weight of its contribution.
    rrf_k:
        The rank offset of reciprocal rank fusion.
    method:
        ``"zscore"``: each list's scores standardised over its own candidates, fused as
        ``sum(w * z)``. ``"minmax"``: scores scaled to [0, 1] over the list, ``sum(w * s)`` (a convex
        combination). ``"rrf"``: reciprocal rank fusion, ``sum(w / (rrf_k + rank))``.
    aggregate:
        What a chunk absent from a list gets from that list. ``"chunk"``: nothing (rrf), or the
        list's lowest candidate score (zscore, minmax): it ranked below every candidate.
        ``"document"``: the best contribution of a chunk *of the same document* in that list, so
        a document's evidence adds up across its chunks (the vector side may match its second
        chunk, BM25 its first) while hits stay passages; a document none of whose chunks is in a
        list gets what ``"chunk"`` gives.

    Returns
    -------
    list[Hit]
        At most ``k`` hits, best first (ties broken by chunk id). A single list keeps its order.

    The defaults were chosen by cross-validation on SciFact train among all of these
    (``benchmarks/fusion_cv.py``, ``benchmarks/README.md``).
    """
    return [_hit(*winner) for winner in _fused(ranked, weights, rrf_k, k, method, aggregate)]


def _fused(ranked: dict[str, list[dict]], weights: dict[str, float], rrf_k: int, k: int, method: str,
           aggregate: str) -> list[tuple[dict, float, dict[str, int | None]]]:
    """``fuse``'s ranking: ``(row, score, ranks)`` of the ``k`` best chunks. It reads only
    ``chunk_id``, ``doc_id`` and the list's score of each row, so the rows may be ids alone."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion method {method!r}: use one of {', '.join(FUSIONS)}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}: use one of {', '.join(AGGREGATES)}")
    rows: dict[str, dict] = {}
    ranks: dict[str, dict[str, int | None]] = {}
    own: dict[str, dict[str, float]] = {}  # chunk -> list -> its contribution
    doc_best: dict[str, dict[str, float]] = {}  # list -> doc -> best contribution of its chunks
    floors: dict[str, float] = {}
    for name, results in ranked.items():
        if not results:
            continue
        w = weights.get(name, 1.0)
        if method == "rrf":
            contributions = [w / (rrf_k + rank) for rank in range(1, len(results) + 1)]
        else:
            norm = _normalised(name, results, method)
            contributions = [w * x for x in norm]
            floors[name] = w * min(norm)
        best = doc_best.setdefault(name, {})
        for rank, (row, add) in enumerate(zip(results, contributions), start=1):
            cid = row["chunk_id"]
            if name in own.get(cid, {}):
                continue  # a chunk listed twice by one retriever counts once, at its best rank
            rows.setdefault(cid, row)
            ranks.setdefault(cid, {n: None for n in ranked})[name] = rank
            own.setdefault(cid, {})[name] = add
            best.setdefault(row["doc_id"], add)  # lists are best first
    scores: dict[str, float] = {}
    for cid, got in own.items():
        total = 0.0
        for name in doc_best:
            if name in got:
                total += got[name]
            elif aggregate == "document" and rows[cid]["doc_id"] in doc_best[name]:
                total += doc_best[name][rows[cid]["doc_id"]]
            else:
                total += floors.get(name, 0.0)
        scores[cid] = total
    order = sorted(scores, key=lambda c: (-scores[c], c))[:k]
    return [(rows[c], scores[c], ranks[c]) for c in order]


def _hit(row: dict, score: float, ranks: dict[str, int | None]) -> Hit:
    return Hit(chunk_id=row["chunk_id"], doc_id=row["doc_id"], text=row["text"], score=round(score, 8), ranks=ranks,
               citation=Citation(row["source_uri"], row["title"], row["heading_path"], row["page_start"],
                                 row["page_end"]))


def _attach_guard_fields(hits: list[Hit], rows: list[dict]) -> None:
    """Copy the guard columns (risk flags, near-duplicate group, superseded-by) of each hit's row."""
    for hit, row in zip(hits, rows):
        hit.risk_flags = hit_flags(row)
        hit.dup_group, hit.superseded_by = row.get("dup_group"), row.get("superseded_by")


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
    collapse_duplicates: bool | None = None,
    include_superseded: bool | None = None,
) -> SearchResult:
    """One-off search of the production index; reuses one Retriever per home within a process."""
    settings = load_settings(home=home)
    key = str(Path(settings.home).resolve())
    with _default_lock:
        retriever = _default.get(key)
        if retriever is None:
            retriever = _default[key] = Retriever(settings=settings)
    return retriever.search(query, k, mode=mode, filters=filters, groups=groups,
                            collapse_duplicates=collapse_duplicates, include_superseded=include_superseded)


__all__ = ["search", "Retriever", "SearchResult", "Hit", "Citation", "QueryError", "IndexError_", "fuse"]
