"""Retrieval quality on a BEIR-format dataset, through the real platform.

    python -m benchmarks.beir DATASET_DIR [--split test] [--out FILE.json] [--limit-queries N] [--work DIR]

The corpus (``corpus.jsonl``) is ingested as a record source by ``pipeline.run_all`` with the
platform's default settings (parse, chunk, enrich, embed, index, promote); the split's queries are
run through ``query.Retriever.search`` in each mode. Documents are ranked by their best chunk: hits
are deduplicated by document id in rank order. Metrics follow BEIR / trec_eval: nDCG@10 with linear
gains, recall@100 and MRR@10 over the documents, averaged over the split's judged queries.

The work folder (default ``benchmarks/.work/beir-<dataset>``) is kept: a second run reuses the index
(the pipeline is incremental), so only the queries are re-run.
"""

from __future__ import annotations

import os
import argparse
import math
import sys
import time
from pathlib import Path

from benchmarks.common import (RESULTS, WORK, indexed_documents, load_qrels, load_queries, machine, make_settings,
                               peak_rss_mb, print_table, source_name, write_json)

MODES = ("keyword", "vector", "hybrid")
# Published nDCG@10 on the SciFact test split, and the one measured on these machines.
REFERENCES = {
    "scifact": {
        "BM25 (BEIR paper, Table 2)": {"mode": "keyword", "ndcg@10": 0.665},
        "BM25 flat (Pyserini)": {"mode": "keyword", "ndcg@10": 0.679},
        "all-MiniLM-L6-v2 (MTEB)": {"mode": "vector", "ndcg@10": 0.645, "recall@100": 0.925},
        "RRF of LanceDB BM25 + all-MiniLM-L6-v2, whole abstracts (measured here)": {"mode": "hybrid", "ndcg@10": 0.716},
    }
}


# ---- metrics ------------------------------------------------------------------------------------


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean metrics over the judged queries (a query with no results scores 0)."""
    qids = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    if not qids:
        return {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "queries": 0}
    n = len(qids)
    return {
        "ndcg@10": sum(ndcg_at(run.get(q, []), qrels[q]) for q in qids) / n,
        "recall@100": sum(recall_at(run.get(q, []), qrels[q]) for q in qids) / n,
        "mrr@10": sum(mrr_at(run.get(q, []), qrels[q]) for q in qids) / n,
        "queries": n,
    }


def doc_ranking(hits, prefix: str) -> list[str]:
    """Corpus ids in the order of each document's best chunk, source prefix stripped."""
    seen: dict[str, None] = {}
    for h in hits:
        doc = h.doc_id[len(prefix):] if h.doc_id.startswith(prefix) else h.doc_id
        seen.setdefault(doc, None)
    return list(seen)


def search_docs(retriever, text: str, mode: str, prefix: str, depth_docs: int = 100, k: int = 200) -> list[str]:
    """At least ``depth_docs`` distinct documents (when the index has them): asks for ``k`` chunks
    and doubles ``k`` (up to the query function's ``max_k``) while chunks of the same documents
    crowd the list."""
    max_k = retriever.settings.query.max_k
    k = min(k, max_k)
    while True:
        hits = retriever.search(text, k, mode=mode).hits
        docs = doc_ranking(hits, prefix)
        if len(docs) >= depth_docs or len(hits) < k or k >= max_k:
            return docs
        k = min(2 * k, max_k)


# ---- the benchmark ------------------------------------------------------------------------------


def build(dataset: Path, work: Path, name: str, model: str | None = None):
    """Ingest the corpus with the platform's defaults (another embedding ``model`` if given);
    returns (settings, per-stage summaries, s)."""
    from ingest_platform.pipeline import run_all

    overrides = {"embedding": {"model": model}} if model else {}
    settings = make_settings(work, dataset / "corpus.jsonl", name, **overrides)
    started = time.perf_counter()
    stages = run_all(settings, promote=True)
    return settings, stages, time.perf_counter() - started


def run_queries(settings, name: str, queries: dict[str, str], qids: list[str], modes=MODES,
                k: int = 200) -> tuple[dict[str, dict[str, dict[str, list[str]]]], dict[str, float]]:
    """Per mode, two runs of every query through ``Retriever.search``: ``top``, the first ten
    documents as a caller gets them (ten hits, more only while chunks of one document crowd them
    out), on which nDCG@10 and MRR@10 are scored: a deep request would change the candidates fusion
    standardises over; and ``deep``, ``k`` chunks or more, for recall@100."""
    from ingest_platform.query import Retriever

    retriever = Retriever(settings=settings, trace=False, cache_size=0)
    retriever.search("warm up the model and the index", 10, mode="hybrid")
    runs, seconds = {}, {}
    for mode in modes:
        started = time.perf_counter()
        top = {q: search_docs(retriever, queries[q], mode, f"{name}:", depth_docs=10, k=10) for q in qids}
        seconds[mode] = time.perf_counter() - started
        deep = {q: search_docs(retriever, queries[q], mode, f"{name}:", k=k) for q in qids}
        runs[mode] = {"top": top, "deep": deep}
    return runs, seconds


def score(run: dict[str, dict[str, list[str]]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10 and MRR@10 of the ``top`` run, recall@100 of the ``deep`` one."""
    top, deep = evaluate(run["top"], qrels), evaluate(run["deep"], qrels)
    return {"ndcg@10": top["ndcg@10"], "mrr@10": top["mrr@10"], "recall@100": deep["recall@100"],
            "queries": top["queries"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.beir", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/beir-<dataset>-<split>.json)")
    ap.add_argument("--limit-queries", type=int, help="score only the first N judged queries")
    ap.add_argument("--work", type=Path, help="work folder for the platform's state (kept and reused)")
    ap.add_argument("--k", type=int, default=200, help="chunks asked of the query function per query (default 200)")
    ap.add_argument("--model", help="embedding model instead of the default (e.g. all-MiniLM-L6-v2); its own "
                                    "work folder and results file")
    args = ap.parse_args(argv)

    dataset = args.dataset.resolve()
    for needed in ("corpus.jsonl", "queries.jsonl"):
        if not (dataset / needed).exists():
            ap.error(f"{dataset / needed} does not exist: not a BEIR folder")
    name = source_name(dataset)
    suffix = f"-{args.model}" if args.model else ""
    work = (args.work or WORK / f"beir-{name}{suffix}").resolve()
    queries = load_queries(dataset)
    qrels = load_qrels(dataset, args.split)
    qids = [q for q in qrels if q in queries and any(r > 0 for r in qrels[q].values())]
    if args.limit_queries:
        qids = qids[: args.limit_queries]
    qrels = {q: qrels[q] for q in qids}

    settings, stages, build_s = build(dataset, work, name, args.model)
    runs, query_s = run_queries(settings, name, queries, qids, k=args.k)
    modes = {mode: score(runs[mode], qrels) for mode in MODES}

    refs = REFERENCES.get(name.lower(), {})
    result = {
        "dataset": name, "dataset_dir": os.path.relpath(dataset), "split": args.split, "queries": len(qids),
        "modes": modes,
        "references": refs,
        "settings": {"chunking": settings.chunking.model_dump(), "query": settings.query.model_dump(),
                     "embedding": settings.embedding.model_dump()},
        "index": {"documents": indexed_documents(settings),
                  "chunks": stages["index"]["rows"]},
        "timings": {
            "build_s": build_s,
            "stages_s": {s: v["wall_s"] for s, v in stages.items()},
            "embedded_chunks": stages["embed"]["embedded"],
            "query_s": query_s,
            "ms_per_query_k10": {m: 1000 * s / max(1, len(qids)) for m, s in query_s.items()},
            "chunks_asked_per_query_for_recall": args.k,
        },
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    rows = [[f"ours: {m}", v["ndcg@10"], v["recall@100"], v["mrr@10"]] for m, v in modes.items()]
    rows += [[ref, v.get("ndcg@10"), v.get("recall@100"), None] for ref, v in refs.items()]
    print_table(["system", "nDCG@10", "recall@100", "MRR@10"], rows,
                title=f"{name} {args.split}: {len(qids)} queries, {result['index']['documents']} documents, "
                      f"{result['index']['chunks']} chunks (build {build_s:.0f}s, "
                      f"{stages['embed']['embedded']} chunks embedded this run)")
    out = args.out or RESULTS / f"beir-{name}-{args.split}{suffix}.json"
    write_json(out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
