"""Ablations: alternatives to the shipped retrieval defaults, scored on a BEIR train split.

    python -m benchmarks.ablations [DATASET_DIR] [--split train] [--out FILE.json]
                                   [--variants a,b] [--limit-queries N] [--work DIR]

Why: the defaults that ship (chunk-level z-score fusion of cosine similarity and BM25 with the
weights and depth of ``[query]``; ``ingest_platform.query.fuse``) were chosen by
``benchmarks.fusion_cv``. Other ideas were tried beside them and rejected; this benchmark keeps them
as code so the README can show what was tried, by how much it moved nDCG@10, and so anyone can
rerun them. They are scored on the train split only (``--split test`` is refused): the test split stays
the one that is reported.

How: the corpus (default SciFact) is ingested as the BEIR benchmark does it (``benchmarks.beir.build``,
incremental: a built index is reused), each judged query is run once per retriever to 200 chunks
(``benchmarks.tune.collect``, cached as ``tune-lists-<split>-200.pkl`` beside the state, the same
cache ``benchmarks.tune`` uses), and every variant re-ranks from those lists, the index's chunk
vectors and, where a variant needs them, extra LanceDB tables or embeddings it builds itself.
Embeddings the index does not hold (title-only vectors, title-prefixed chunks, the queries) are
computed once and cached under ``<work>/ablations/``, keyed by model and texts.

Each variant has a small fixed grid; the best grid point is reported (the best of a grid on train
is also how ``benchmarks.tune`` picked the defaults), with its nDCG@10 minus the shipped default's
on the same queries. A variant with a larger grid has more chances to win by noise: a delta of a
few thousandths on ~800 queries is within it. Most grids also move the vector weight, which on its
own moves the score: the ``shipped_weights`` control is the shipped fusion at those weights, so a
variant's gain over it at the same weight (``delta_same_weight``, with the paired standard error)
is what the variant adds. Variants fused per document (best chunk per list,
``benchmarks.tune.score_fusion``) compare best against ``doc_zscore``, that fusion on the shipped
lists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import tune
from benchmarks.beir import evaluate
from benchmarks.fusion_cv import paired, per_query
from benchmarks.common import (REPO, RESULTS, SCIFACT, WORK, load_qrels, load_queries, machine, print_table,
                               read_jsonl, source_name, write_json)
from benchmarks.naive import record_text

# The options ``ingest_platform.index`` builds its full-text index with.
FTS_OPTIONS = dict(with_position=True, stem=True, remove_stop_words=True, language="English", lower_case=True,
                   ascii_folding=True, replace=True)

Grid = Iterator[tuple[dict, dict[str, list[str]]]]  # (parameters, query id -> ranked corpus ids)


@dataclass
class Context:
    """What the variants share: the split's queries, the cached candidate lists, the index."""

    settings: Any
    prefix: str
    corpus: Path
    cache: Path  # <work>/ablations: this benchmark's own tables and embeddings
    qrels: dict[str, dict[str, int]]  # the judged queries scored (query id -> corpus id -> relevance)
    texts: dict[str, str]  # query id -> the query as the query function cleans it
    lists: dict[str, dict[str, list[dict]]]

    @property
    def qids(self) -> list[str]:
        return list(self.qrels)

    @property
    def depth(self) -> int:
        return self.settings.query.candidates

    def shipped(self, lists: dict, wv: float | None = None, wk: float | None = None) -> list[str]:
        """The query function's fusion with the settings' defaults (weights overridable)."""
        q = self.settings.query
        return tune.shipped(lists, q.fusion, q.rrf_k, q.vector_weight if wv is None else wv,
                            q.keyword_weight if wk is None else wk, q.candidates, self.prefix)

    # -- the index, read once --
    @cached_property
    def pinned(self):
        from ingest_platform.query import Retriever

        return Retriever(settings=self.settings, trace=False, cache_size=0)._pin()

    @cached_property
    def _index_rows(self):
        """The index's rows by chunk id: its scan order changes when the table is compacted, and the
        embedding caches below are keyed by the texts in order."""
        return self.pinned.table.to_arrow().select(["chunk_id", "doc_id", "title", "text", "vector"]).sort_by("chunk_id")

    @cached_property
    def chunks(self) -> dict[str, list]:
        return self._index_rows.select(["chunk_id", "doc_id", "title", "text"]).to_pydict()

    @cached_property
    def chunk_vectors(self) -> np.ndarray:
        column = self._index_rows.column("vector").combine_chunks()
        return column.flatten().to_numpy().reshape(len(column), -1)

    @cached_property
    def chunk_pos(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chunks["chunk_id"])}

    @cached_property
    def docs(self) -> tuple[list[str], np.ndarray]:
        """The index's document ids, and each chunk's position among them."""
        ids = sorted(set(self.chunks["doc_id"]))
        pos = {d: i for i, d in enumerate(ids)}
        return ids, np.array([pos[d] for d in self.chunks["doc_id"]])

    # -- embeddings the index does not hold, cached by model and texts --
    @cached_property
    def embedder(self):
        from ingest_platform.embedding import get_embedder

        return get_embedder(self.pinned.model_spec, self.settings.embedding.device, self.settings.embedding.batch_size)

    def embed(self, kind: str, texts: list[str], query: bool = False) -> np.ndarray:
        model = self.embedder
        key = hashlib.sha256("\x00".join([model.model_id, str(query), *texts]).encode()).hexdigest()[:16]
        path = self.cache / f"{kind}-{key}.npy"
        if path.exists():
            return np.load(path)
        print(f"embedding {len(texts)} texts ({kind}); cached as {os.path.relpath(path, REPO)}", flush=True)
        started = time.perf_counter()
        if query:
            vectors = np.stack([model.encode_query(t) for t in texts]) if texts else np.zeros((0, model.dim))
        else:
            vectors = model.encode(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors.astype(np.float32))
        os.replace(tmp, path)
        print(f"  {time.perf_counter() - started:.0f}s", flush=True)
        return vectors

    @cached_property
    def query_vectors(self) -> dict[str, np.ndarray]:
        return dict(zip(self.qids, self.embed("queries", [self.texts[q] for q in self.qids], query=True)))

    def vector_rows(self, sims: np.ndarray, chunk_ids: list[str], doc_ids: list[str]) -> list[dict]:
        """The top ``depth`` of ``sims`` as vector-search rows (cosine distance, as LanceDB gives)."""
        top = np.argsort(-sims, kind="stable")[: self.depth]
        return [{"chunk_id": chunk_ids[i], "doc_id": doc_ids[i], "_distance": 1.0 - float(sims[i])} for i in top]

    def fts_table(self, name: str, data: dict[str, list], columns: tuple[str, ...]):
        """A LanceDB table of ``data`` with the platform's full-text index on ``columns``."""
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(str(self.cache / "lancedb"))
        db.drop_table(name, ignore_missing=True)
        table = db.create_table(name, pa.table(data))
        for column in columns:
            table.create_fts_index(column, **FTS_OPTIONS)
        return table

    def fts(self, table, query) -> list[dict]:
        try:
            return (table.search(query, query_type="fts").select(["chunk_id", "doc_id", "_score"])
                    .limit(self.depth).to_arrow().to_pylist())
        except ValueError as exc:  # a query of stop words only has no terms: no hits
            if "no terms" in str(exc).lower() or "empty" in str(exc).lower():
                return []
            raise


# ---- document-level scoring ---------------------------------------------------------------------


def doc_scores(rows: list[dict], key: str, sign: float, prefix: str, how: str = "max") -> dict[str, float]:
    """A document's score from its chunks' (``sign * row[key]``): the best chunk (``max``, what
    ships), the best plus ``w`` times the second (``top2:w``), or the ``sum``."""
    per: dict[str, list[float]] = {}
    for r in rows:
        per.setdefault(r["doc_id"][len(prefix):], []).append(sign * r[key])
    if how == "max":
        return {d: max(xs) for d, xs in per.items()}
    if how == "sum":
        return {d: sum(xs) for d, xs in per.items()}
    w = float(how.split(":")[1])
    top2 = {d: sorted(xs, reverse=True)[:2] + [0.0] for d, xs in per.items()}
    return {d: xs[0] + w * xs[1] for d, xs in top2.items()}


def zfuse(*signals: tuple[float, dict[str, float]]) -> list[str]:
    """Documents by the weighted sum of their per-query z-scored signals; a document a signal lacks
    gets that signal's lowest z-score (as in ``tune.score_fusion``)."""
    standardised = []
    for weight, scores in signals:
        if not scores:
            continue
        vals = list(scores.values())
        mean = sum(vals) / len(vals)
        sd = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5 or 1.0
        z = {d: (s - mean) / sd for d, s in scores.items()}
        standardised.append((weight, z, min(z.values())))
    fused = {d: sum(w * z.get(d, floor) for w, z, floor in standardised)
             for d in set().union(*(z for _, z, _ in standardised))}
    return sorted(fused, key=lambda d: (-fused[d], d))


def doc_signals(ctx: Context, q: str, how_v: str = "max", how_k: str = "max") -> tuple[dict, dict]:
    lists = ctx.lists[q]
    return (doc_scores(lists["vector"][: ctx.depth], "_distance", -1.0, ctx.prefix, how_v),
            doc_scores(lists["keyword"][: ctx.depth], "_score", 1.0, ctx.prefix, how_k))


# ---- the variants: each yields (parameters, run) over a fixed grid -------------------------------

VARIANTS: dict[str, Callable[[Context], Grid]] = {}
CONTROLS = ("shipped", "shipped_weights")  # always run: the baseline and the same fusion at other weights


def variant(fn: Callable[[Context], Grid]) -> Callable[[Context], Grid]:
    VARIANTS[fn.__name__] = fn
    return fn


@variant
def shipped(ctx: Context) -> Grid:
    """Shipped default: chunk-level z-score fusion (query.fuse), weights and depth from the settings."""
    q = ctx.settings.query
    yield ({"fusion": q.fusion, "vector_weight": q.vector_weight, "keyword_weight": q.keyword_weight,
            "depth": q.candidates}, {qid: ctx.shipped(ctx.lists[qid]) for qid in ctx.qids})


@variant
def shipped_weights(ctx: Context) -> Grid:
    """Control: the shipped fusion at the vector weights the other grids try (what a weight shift alone buys)."""
    for wv in (0.4, 0.6, 0.7):
        yield ({"vector_weight": wv, "keyword_weight": round(1 - wv, 2)},
               {q: ctx.shipped(ctx.lists[q], wv, round(1 - wv, 2)) for q in ctx.qids})


@variant
def doc_zscore(ctx: Context) -> Grid:
    """Control for the document-level variants: z-score fusion of each document's best chunk per list."""
    for alpha in (0.5, 0.6, 0.7):
        yield {"alpha": alpha}, {q: tune.score_fusion(ctx.lists[q], alpha, ctx.depth, ctx.prefix, "z")
                                 for q in ctx.qids}


@variant
def chunk_aggregation(ctx: Context) -> Grid:
    """Document score from its top-2 chunks or the sum of its chunks instead of the best one, per list; z-fused."""
    for how_v, how_k in (("max", "top2:0.2"), ("max", "top2:0.5"), ("max", "sum"), ("top2:0.1", "max"),
                         ("top2:0.3", "max"), ("top2:0.3", "top2:0.5")):
        signals = {q: doc_signals(ctx, q, how_v, how_k) for q in ctx.qids}
        for alpha in (0.5, 0.6):
            yield ({"vector": how_v, "keyword": how_k, "alpha": alpha},
                   {q: zfuse((alpha, v), (1 - alpha, k)) for q, (v, k) in signals.items()})


@variant
def title_bm25(ctx: Context) -> Grid:
    """BM25 over chunk text plus the title as a boosted second field (LanceDB MultiMatchQuery); shipped fusion."""
    from lancedb.query import MultiMatchQuery

    table = ctx.fts_table("title_bm25", {k: ctx.chunks[k] for k in ("chunk_id", "doc_id", "title", "text")},
                          ("text", "title"))
    for boost in (0.25, 0.5, 1.0, 2.0):
        run = {}
        for q in ctx.qids:
            match = MultiMatchQuery(ctx.texts[q].replace('"', " "), ["text", "title"], boosts=[1.0, boost])
            run[q] = ctx.shipped({"vector": ctx.lists[q]["vector"], "keyword": ctx.fts(table, match)})
        yield {"title_boost": boost}, run


@variant
def wholedoc_bm25(ctx: Context) -> Grid:
    """BM25 over whole documents (title + abstract) instead of chunks, z-fused per document with the chunk vectors."""
    from ingest_platform.query import keyword_query

    docs = list(read_jsonl(ctx.corpus))
    table = ctx.fts_table("wholedoc_bm25", {
        "chunk_id": [str(d["_id"]) for d in docs], "doc_id": [ctx.prefix + str(d["_id"]) for d in docs],
        "text": [record_text(d) for d in docs]}, ("text",))
    keyword = {q: ctx.fts(table, keyword_query(ctx.texts[q])) for q in ctx.qids}
    for alpha in (0.5, 0.6, 0.7):
        yield {"alpha": alpha}, {q: tune.score_fusion({"vector": ctx.lists[q]["vector"], "keyword": keyword[q]},
                                                      alpha, ctx.depth, ctx.prefix, "z") for q in ctx.qids}


@variant
def title_vector(ctx: Context) -> Grid:
    """A third signal: cosine of the query to the title-only embedding, z-fused per document."""
    ids, chunk_doc = ctx.docs
    first = {}
    for i, d in enumerate(chunk_doc):
        first.setdefault(int(d), i)
    titles = ctx.embed("titles", [ctx.chunks["title"][first[i]] or "" for i in range(len(ids))])
    signals = {}
    for q in ctx.qids:
        sims = titles @ ctx.query_vectors[q]
        top = np.argsort(-sims, kind="stable")[: ctx.depth]
        signals[q] = (*doc_signals(ctx, q), {ids[i][len(ctx.prefix):]: float(sims[i]) for i in top})
    for wv, wk, wt in ((0.6, 0.4, 0.1), (0.6, 0.4, 0.2), (0.5, 0.5, 0.1), (0.5, 0.5, 0.2), (0.4, 0.5, 0.1),
                       (0.4, 0.5, 0.2)):
        yield ({"vector_weight": wv, "keyword_weight": wk, "title_weight": wt},
               {q: zfuse((wv, v), (wk, k), (wt, t)) for q, (v, k, t) in signals.items()})


@variant
def title_prefixed(ctx: Context) -> Grid:
    """Chunks that do not start with their document's title embedded as title + text; shipped fusion."""
    c = ctx.chunks
    todo = [i for i, (title, text) in enumerate(zip(c["title"], c["text"])) if title and not text.startswith(title)]
    matrix = ctx.chunk_vectors.copy()
    if todo:
        matrix[todo] = ctx.embed("title-prefixed", [f"{c['title'][i]}\n\n{c['text'][i]}" for i in todo])
    vector = {q: ctx.vector_rows(matrix @ ctx.query_vectors[q], c["chunk_id"], c["doc_id"]) for q in ctx.qids}
    for wv in (0.5, 0.6, 0.7):
        yield ({"vector_weight": wv, "keyword_weight": round(1 - wv, 2), "prefixed_chunks": len(todo)},
               {q: ctx.shipped({"vector": vector[q], "keyword": ctx.lists[q]["keyword"]}, wv, 1 - wv)
                for q in ctx.qids})


@variant
def vector_prf(ctx: Context) -> Grid:
    """Vector pseudo-relevance feedback: the query plus beta times the mean vector of the best chunks of the
    top m documents of the shipped ranking, searched again; shipped fusion."""
    c, matrix = ctx.chunks, ctx.chunk_vectors
    feedback_chunks = {}
    for q in ctx.qids:
        best: dict[str, str] = {}
        for row in (*ctx.lists[q]["vector"], *ctx.lists[q]["keyword"]):
            best.setdefault(row["doc_id"][len(ctx.prefix):], row["chunk_id"])
        feedback_chunks[q] = [ctx.chunk_pos[best[d]] for d in ctx.shipped(ctx.lists[q])]
    for beta in (0.3, 0.5, 1.0):
        for m in (1, 3, 5):
            run = {}
            for q in ctx.qids:
                vec = ctx.query_vectors[q] + beta * matrix[feedback_chunks[q][:m]].mean(axis=0)
                rows = ctx.vector_rows(matrix @ (vec / np.linalg.norm(vec)), c["chunk_id"], c["doc_id"])
                run[q] = ctx.shipped({"vector": rows, "keyword": ctx.lists[q]["keyword"]})
            yield {"beta": beta, "feedback_docs": m}, run


@variant
def doc_mean_vector(ctx: Context) -> Grid:
    """Vector score per document mixes its best chunk with its mean chunk vector: (1-lam)*best + lam*mean;
    z-fused per document with BM25."""
    ids, chunk_doc = ctx.docs
    means = np.zeros((len(ids), ctx.chunk_vectors.shape[1]), np.float32)
    np.add.at(means, chunk_doc, ctx.chunk_vectors)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    per_query = {}
    for q in ctx.qids:
        best = np.full(len(ids), -1.0)
        np.maximum.at(best, chunk_doc, ctx.chunk_vectors @ ctx.query_vectors[q])
        per_query[q] = (best, means @ ctx.query_vectors[q])
    for lam in (0.3, 0.5, 1.0):
        vector = {q: ctx.vector_rows((1 - lam) * best + lam * mean, ids, ids) for q, (best, mean) in per_query.items()}
        for alpha in (0.5, 0.6):
            yield ({"lambda": lam, "alpha": alpha},
                   {q: tune.score_fusion({"vector": vector[q], "keyword": ctx.lists[q]["keyword"]}, alpha, ctx.depth,
                                         ctx.prefix, "z") for q in ctx.qids})


def completed_zfuse(vector: list[dict], keyword: list[dict], wv: float, wk: float, prefix: str,
                    true_vector: Callable[[str], float] | None = None,
                    true_keyword: dict[str, float] | None = None) -> list[str]:
    """Chunk-level z-score fusion as ``query.fuse`` runs it, except that a candidate one list lacks
    gets its true score in that list (when given), standardised with that list's own mean and
    deviation, instead of the list's lowest z-score. Without ``true_*`` it is the shipped fusion."""
    def stats(xs: list[float]) -> tuple[float, float]:
        if not xs:  # a query of stop words only: no keyword list
            return 0.0, 1.0
        m = sum(xs) / len(xs)
        return m, (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5 or 1.0

    vs = {r["chunk_id"]: 1.0 - r["_distance"] for r in reversed(vector)}
    ks = {r["chunk_id"]: r["_score"] for r in reversed(keyword)}
    doc = {r["chunk_id"]: r["doc_id"] for r in (*vector, *keyword)}
    (vm, vsd), (km, ksd) = stats([1.0 - r["_distance"] for r in vector]), stats([r["_score"] for r in keyword])
    vfloor = (min(vs.values()) - vm) / vsd if vs else 0.0
    kfloor = (min(ks.values()) - km) / ksd if ks else 0.0
    fused = {}
    for c in doc:
        if c in vs:
            zv = (vs[c] - vm) / vsd
        else:
            zv = vfloor if true_vector is None else min(vfloor, (true_vector(c) - vm) / vsd)
        if not ks:  # the shipped fusion leaves an empty list out
            zk = 0.0
        elif c in ks:
            zk = (ks[c] - km) / ksd
        elif true_keyword is not None:
            zk = min(kfloor, (true_keyword.get(c, 0.0) - km) / ksd)
        else:
            zk = kfloor
        fused[c] = wv * zv + wk * zk
    return tune.docs_of([{"doc_id": doc[c]} for c in sorted(fused, key=lambda c: (-fused[c], c))], prefix)


@variant
def score_completion(ctx: Context) -> Grid:
    """A candidate only one retriever listed gets its true score in the other list (its cosine to the
    query; its BM25 score from a search restricted to the candidates) instead of that list's floor;
    chunk-level z-score fusion otherwise as shipped."""
    from ingest_platform.index import quote
    from ingest_platform.query import keyword_query

    vectors, pos = ctx.chunk_vectors, ctx.chunk_pos
    table = ctx.pinned.table
    keyword_true: dict[str, dict[str, float]] = {}
    for q in ctx.qids:
        lists = ctx.lists[q]
        keyword_ids = {r["chunk_id"] for r in lists["keyword"][: ctx.depth]}
        missing = [r["chunk_id"] for r in lists["vector"][: ctx.depth] if r["chunk_id"] not in keyword_ids]
        got = {}
        if missing:
            where = f"chunk_id IN ({', '.join(quote(c) for c in missing)})"
            try:
                rows = (table.search(keyword_query(ctx.texts[q]), query_type="fts").where(where, prefilter=True)
                        .select(["chunk_id", "_score"]).limit(len(missing)).to_arrow().to_pylist())
            except ValueError:
                rows = []
            got = {r["chunk_id"]: r["_score"] for r in rows}
        keyword_true[q] = got
    for wv in (0.5, 0.6):
        for complete in ("none", "vector", "keyword", "both"):
            run = {}
            for q in ctx.qids:
                qv = ctx.query_vectors[q]
                true_v = (lambda c, qv=qv: float(vectors[pos[c]] @ qv)) if complete in ("vector", "both") else None
                true_k = keyword_true[q] if complete in ("keyword", "both") else None
                run[q] = completed_zfuse(ctx.lists[q]["vector"][: ctx.depth], ctx.lists[q]["keyword"][: ctx.depth],
                                         wv, round(1 - wv, 2), ctx.prefix, true_v, true_k)
            yield {"vector_weight": wv, "keyword_weight": round(1 - wv, 2), "completed": complete}, run


# ---- the benchmark ------------------------------------------------------------------------------


def context(dataset: Path, split: str, work: Path, limit: int | None) -> Context:
    """Build (or reuse) the index and the tune cache the way ``benchmarks.tune`` does."""
    from benchmarks.beir import build
    from ingest_platform.query import _clean_query

    name = source_name(dataset)
    settings, _, _ = build(dataset, work, name)
    queries = load_queries(dataset)
    qrels = {q: r for q, r in load_qrels(dataset, split).items() if q in queries}
    # All of the split's queries, so the cache is the one ``benchmarks.tune`` writes and reads.
    lists = tune.collect(settings, {q: queries[q] for q in qrels}, settings.query.candidates,
                         work / f"tune-lists-{split}-{settings.query.candidates}.pkl")
    qids = [q for q in qrels if any(r > 0 for r in qrels[q].values())][:limit]
    texts = {q: _clean_query(queries[q], settings.query.max_query_chars) for q in qids}
    return Context(settings, f"{name}:", dataset / "corpus.jsonl", work / "ablations", {q: qrels[q] for q in qids},
                   texts, lists)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ablations", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/ablations-<split>.json)")
    ap.add_argument("--work", type=Path, help="work folder (default benchmarks/.work/beir-<dataset>, shared with "
                                              "benchmarks.beir and benchmarks.tune)")
    ap.add_argument("--limit-queries", type=int, help="score only the first N judged queries (smoke tests)")
    ap.add_argument("--variants", help=f"comma-separated, of: {', '.join(v for v in VARIANTS if v not in CONTROLS)} "
                                       "(default all; the shipped baseline and its weight control always run)")
    args = ap.parse_args(argv)
    if args.split == "test":
        print("refusing to run ablations on the test split", file=sys.stderr)
        sys.exit(2)
    chosen = list(VARIANTS)
    if args.variants:
        wanted = {v.strip() for v in args.variants.split(",") if v.strip()}
        if unknown := wanted - set(VARIANTS):
            ap.error(f"unknown variants: {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})")
        chosen = [v for v in VARIANTS if v in CONTROLS or v in wanted]

    dataset = args.dataset.resolve()
    name = source_name(dataset)
    work = (args.work or WORK / f"beir-{name}").resolve()
    ctx = context(dataset, args.split, work, args.limit_queries)

    results, best_per_query = [], {}
    controls: dict[float, dict[str, float]] = {}  # vector weight -> per-query nDCG@10 of the shipped fusion
    for v in chosen:
        started = time.perf_counter()
        grid, per = [], []
        for params, run in VARIANTS[v](ctx):
            grid.append({"params": params, **evaluate(run, ctx.qrels)})
            per.append(per_query(run, ctx.qrels, ctx.qids))
            if v in CONTROLS:
                controls[params["vector_weight"]] = per[-1]
        i = max(range(len(grid)), key=lambda j: grid[j]["ndcg@10"])
        best_per_query[v] = per[i]
        results.append({"variant": v, "description": " ".join(VARIANTS[v].__doc__.split()), **grid[i],
                        "seconds": round(time.perf_counter() - started, 1), "grid": grid})
        print(f"{v}: nDCG@10 {grid[i]['ndcg@10']:.4f} {grid[i]['params']} ({len(grid)} grid points, "
              f"{results[-1]['seconds']:.0f}s)", flush=True)
    base = results[0]["ndcg@10"]
    for r in results:
        r["delta_ndcg@10"] = r["ndcg@10"] - base
        # Against the shipped fusion at the best point's own vector weight (``alpha`` is that weight
        # in the document-level variants; a grid without one fuses at the shipped weight): what the
        # variant adds beyond moving the weight.
        w = r["params"].get("vector_weight", r["params"].get("alpha", ctx.settings.query.vector_weight))
        if r["variant"] not in CONTROLS and w in controls:
            r["control_vector_weight"] = w
            r["delta_same_weight"], r["delta_same_weight_se"] = paired(best_per_query[r["variant"]], controls[w])
    results.sort(key=lambda r: -r["ndcg@10"])
    same = lambda r: (f"{r['delta_same_weight']:+.4f} ± {r['delta_same_weight_se']:.4f}"
                      if "delta_same_weight" in r else "")
    print_table(["variant", "nDCG@10", "delta", "vs shipped at same weight (± SE)", "recall@100", "MRR@10",
                 "best parameters"],
                [[r["variant"], r["ndcg@10"], f"{r['delta_ndcg@10']:+.4f}", same(r), r["recall@100"], r["mrr@10"],
                  " ".join(f"{k}={v}" for k, v in r["params"].items())] for r in results],
                title=f"Ablations on {name} {args.split} ({len(ctx.qids)} queries), best grid point each, "
                      f"delta = nDCG@10 - shipped")
    out = {"dataset": name, "dataset_dir": os.path.relpath(dataset, REPO), "split": args.split,
           "queries": len(ctx.qids), "depth": ctx.depth, "baseline": "shipped",
           "query_settings": ctx.settings.query.model_dump(), "variants": results, "machine": machine()}
    write_json(args.out or RESULTS / f"ablations-{args.split}.json", out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
