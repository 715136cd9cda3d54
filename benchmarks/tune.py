"""Fusion tuning on a BEIR split (SciFact ``train`` by default): never the split that is reported.

    python -m benchmarks.tune [DATASET_DIR] [--split train] [--depth 200] [--out FILE.json]

Runs each query once per retriever (vector, keyword) against the index the BEIR benchmark built,
to ``--depth`` chunks, with the same LanceDB calls the query function makes, then scores fusion
variants offline with ``ingest_platform.query.fuse`` (the code that ships) and a few alternatives.
The candidate lists are cached per index version, so re-scoring is instant.
"""

from __future__ import annotations

import argparse
import itertools
import math
import pickle
import sys
from pathlib import Path

from benchmarks.beir import evaluate
from benchmarks.common import RESULTS, SCIFACT, WORK, load_qrels, load_queries, print_table, source_name, write_json


def collect(settings, texts: dict[str, str], depth: int, cache: Path) -> dict:
    from ingest_platform.embedding import get_embedder
    from ingest_platform.query import _RESULT_COLUMNS, Retriever, access_filter

    retriever = Retriever(settings=settings, trace=False, cache_size=0)
    pinned = retriever._pin()
    key = (pinned.version, depth, tuple(sorted(texts)))
    if cache.exists():
        data = pickle.loads(cache.read_bytes())
        if data["key"] == key:
            return data["lists"]
    where = access_filter(("public",))
    embedder = get_embedder(pinned.model_spec, settings.embedding.device)
    cols = ["chunk_id", "doc_id"]
    lists = {}
    for qid, text in texts.items():
        from ingest_platform.query import _clean_query

        clean = _clean_query(text, settings.query.max_query_chars)
        vec = embedder.encode_query(clean)
        v = (pinned.table.search(vec, vector_column_name="vector").distance_type("cosine")
             .where(where, prefilter=True).select([*cols, "_distance"]).limit(depth).to_arrow().to_pylist())
        kw = retriever._keyword(pinned.table, clean, where, depth)
        lists[qid] = {"vector": v, "keyword": [{c: r[c] for c in (*cols, "_score")} for r in kw]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps({"key": key, "lists": lists}))
    return lists


def docs_of(rows: list[dict], prefix: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(r["doc_id"][len(prefix):], None)
    return list(seen)


# ---- fusion variants (scored on document rankings) ----------------------------------------------


def shipped(lists, method, rrf_k, wv, wk, depth, prefix):
    """``ingest_platform.query.fuse``, the code the query function runs, on the cached lists."""
    from ingest_platform.query import fuse

    ranked = {"vector": [_row(r) for r in lists["vector"][:depth]], "keyword": [_row(r) for r in lists["keyword"][:depth]]}
    hits = fuse(ranked, {"vector": wv, "keyword": wk}, rrf_k, 1000, method=method)
    return docs_of([{"doc_id": h.doc_id} for h in hits], prefix)


def rrf_chunks(lists, rrf_k, wv, wk, depth, prefix):
    return shipped(lists, "rrf", rrf_k, wv, wk, depth, prefix)


def _row(r):
    return {**r, "text": "", "source_uri": "", "title": None, "heading_path": None, "page_start": None,
            "page_end": None}


def rrf_docs(lists, rrf_k, wv, wk, depth, prefix):
    scores: dict[str, float] = {}
    for name, w in (("vector", wv), ("keyword", wk)):
        for rank, d in enumerate(docs_of(lists[name][:depth], prefix), start=1):
            scores[d] = scores.get(d, 0.0) + w / (rrf_k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))


def score_fusion(lists, alpha, depth, prefix, norm="minmax"):
    """Convex combination of per-list normalised scores, document = its best chunk per list."""
    def per_doc(rows, key, sign):
        best: dict[str, float] = {}
        for r in rows[:depth]:
            d = r["doc_id"][len(prefix):]
            s = sign * r[key]
            best[d] = max(best.get(d, -math.inf), s)
        if not best:
            return {}
        vals = list(best.values())
        if norm == "minmax":
            lo, hi = min(vals), max(vals)
            return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in best.items()}
        mean = sum(vals) / len(vals)
        sd = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5 or 1.0
        return {d: (s - mean) / sd for d, s in best.items()}

    v = per_doc(lists["vector"], "_distance", -1.0)
    k = per_doc(lists["keyword"], "_score", 1.0)
    floor_v = min(v.values(), default=0.0)
    floor_k = min(k.values(), default=0.0)
    scores = {d: alpha * v.get(d, floor_v) + (1 - alpha) * k.get(d, floor_k) for d in set(v) | set(k)}
    return sorted(scores, key=lambda d: (-scores[d], d))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--split", default="train")
    ap.add_argument("--depth", type=int, default=200)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS / "tune-fusion.json")
    args = ap.parse_args(argv)
    if args.split == "test":
        print("refusing to tune on the test split", file=sys.stderr)
        sys.exit(2)

    from benchmarks.beir import build

    dataset = args.dataset.resolve()
    name = source_name(dataset)
    prefix = f"{name}:"
    work = (args.work or WORK / f"beir-{name}").resolve()
    settings, _, _ = build(dataset, work, name)
    queries = load_queries(dataset)
    qrels = load_qrels(dataset, args.split)
    qrels = {q: r for q, r in qrels.items() if q in queries}
    lists = collect(settings, {q: queries[q] for q in qrels}, args.depth,
                    work / f"tune-lists-{args.split}-{args.depth}.pkl")

    def score(fn) -> dict:
        return evaluate({q: fn(lists[q]) for q in qrels}, qrels)

    results = []
    results.append(("vector only", score(lambda l: docs_of(l["vector"], prefix))))
    results.append(("keyword only", score(lambda l: docs_of(l["keyword"], prefix))))
    for depth, rrf_k in itertools.product((50, 100, 200), (10, 30, 60, 100)):
        for wv, wk in ((1.0, 1.0), (1.0, 0.8), (0.8, 1.0), (1.0, 0.6), (0.6, 1.0)):
            if depth > args.depth:
                continue
            results.append((f"rrf chunks depth={depth} k={rrf_k} wv={wv} wk={wk}",
                            score(lambda l: rrf_chunks(l, rrf_k, wv, wk, depth, prefix))))
            results.append((f"rrf docs depth={depth} k={rrf_k} wv={wv} wk={wk}",
                            score(lambda l: rrf_docs(l, rrf_k, wv, wk, depth, prefix))))
    for depth in (50, 100, 150, 200):
        for wv in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
            if depth <= args.depth:
                results.append((f"zscore (shipped) depth={depth} wv={wv} wk={round(1 - wv, 2)}",
                                score(lambda l: shipped(l, "zscore", 60, wv, 1 - wv, depth, prefix))))
    for depth in (50, 100, 200):
        for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
            for norm in ("minmax", "z"):
                if depth <= args.depth:
                    results.append((f"score {norm} depth={depth} alpha={alpha}",
                                    score(lambda l: score_fusion(l, alpha, depth, prefix, norm))))
    results.sort(key=lambda r: -r[1]["ndcg@10"])
    print_table(["variant", "nDCG@10", "recall@100", "MRR@10"],
                [[n, m["ndcg@10"], m["recall@100"], m["mrr@10"]] for n, m in results[:40]],
                title=f"Fusion variants on {name} {args.split} ({len(qrels)} queries), best first")
    out = {"dataset": name, "split": args.split, "depth": args.depth,
           "variants": [{"variant": n, **m} for n, m in results]}
    write_json(args.out, out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
