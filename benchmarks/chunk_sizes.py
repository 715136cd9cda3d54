"""Retrieval against chunk size, on a BEIR split that is not reported (SciFact ``train`` by default).

    python -m benchmarks.chunk_sizes [DATASET_DIR] [--sizes 254,510] [--split train] [--work DIR] [--out FILE.json]

``[chunking] max_tokens`` was set for all-MiniLM-L6-v2, which reads 256 word pieces; the default
model now reads 512. Each size builds the corpus from an empty state with the platform's defaults
otherwise (its own work folder, kept and reused), and the split's queries run through
``Retriever.search`` in each mode, as ``benchmarks.beir`` does. Every size is compared with the
first one query by query: the mean paired difference in nDCG@10 and its standard error, so a
difference inside the noise reads as such.

Longer chunks cost more to embed per token (attention grows with the sequence) but repeat fewer
overlap tokens. The build's embed stage is not comparable across builds on a busy machine, so the
cost is measured apart: the chunks of the same random documents at each size, encoded by the same
model in one process, sizes taken in turn, ``--rounds`` times; the JSON reports each size's median
seconds and its ratio to the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.beir import MODES, ndcg_at, run_queries, score
from benchmarks.common import (RESULTS, SCIFACT, WORK, indexed_documents, load_qrels, load_queries, machine,
                               make_settings, print_table, source_name, write_json)


def paired(base: list[float], other: list[float]) -> tuple[float, float]:
    """Mean of ``other - base`` over the queries, and its standard error."""
    diffs = [o - b for b, o in zip(base, other)]
    return statistics.fmean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5


def embed_cost(settings_by_size: dict, documents: int, rounds: int, seed: int = 0) -> dict[int, dict]:
    """Median seconds to encode the chunks of the same ``documents`` random documents, per size."""
    import random

    from ingest_platform import pipeline
    from ingest_platform.embedding import Embedder

    texts = {}
    for size, settings in settings_by_size.items():
        table = pipeline.index_store(settings).checkout("production").to_arrow().select(["doc_id", "text"])
        texts[size] = list(zip(table["doc_id"].to_pylist(), table["text"].to_pylist()))
    first = next(iter(texts.values()))
    chosen = set(random.Random(seed).sample(sorted({d for d, _ in first}), documents))
    embedder = Embedder(next(iter(settings_by_size.values())).embedding.model)  # no cache: every text is encoded
    embedder.encode(["warm up"])
    seconds: dict[int, list[float]] = {size: [] for size in texts}
    for _ in range(rounds):
        for size, rows in texts.items():
            batch = [t for d, t in rows if d in chosen]
            started = time.perf_counter()
            embedder.encode(batch)
            seconds[size].append(time.perf_counter() - started)
    base = statistics.median(next(iter(seconds.values())))
    return {size: {"documents": documents, "chunks": sum(d in chosen for d, _ in texts[size]),
                   "encode_s": statistics.median(s), "encode_s_all": s,
                   "ratio_to_first": statistics.median(s) / base} for size, s in seconds.items()}


def build(dataset: Path, name: str, max_tokens: int, work: Path):
    from ingest_platform.pipeline import run_all

    settings = make_settings(work / f"chunks-{name}-{max_tokens}", dataset / "corpus.jsonl", name,
                             chunking={"max_tokens": max_tokens})
    stages = run_all(settings, promote=True)
    return settings, stages


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.chunk_sizes", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--sizes", default="254,510", help="max_tokens values, comma-separated; the first is the baseline")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit-queries", type=int, help="score only the first N judged queries")
    ap.add_argument("--cost-documents", type=int, default=300, help="documents whose chunks are encoded to time each size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=WORK, help="folder for the builds, one per size (kept and reused)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    dataset = args.dataset.resolve()
    if not (dataset / "corpus.jsonl").exists():
        ap.error(f"{dataset} holds no corpus.jsonl: not a BEIR folder")
    sizes = [int(s) for s in args.sizes.split(",")]
    name = source_name(dataset)
    queries, qrels = load_queries(dataset), load_qrels(dataset, args.split)
    qids = [q for q in qrels if q in queries and any(r > 0 for r in qrels[q].values())][: args.limit_queries]
    qrels = {q: qrels[q] for q in qids}

    per_size, settings_by_size = {}, {}
    for size in sizes:
        settings, stages = build(dataset, name, size, args.work.resolve())
        settings_by_size[size] = settings
        runs, _ = run_queries(settings, name, queries, qids)
        docs = indexed_documents(settings)
        per_size[size] = {
            "max_tokens": size,
            "chunks": stages["index"]["rows"],
            "chunks_per_document": stages["index"]["rows"] / max(1, docs),
            "embed_s": stages["embed"]["wall_s"],
            "modes": {m: score(runs[m], qrels) for m in MODES},
            "per_query_ndcg@10": {m: [ndcg_at(runs[m]["top"].get(q, []), qrels[q]) for q in qids] for m in MODES},
        }
    cost = embed_cost(settings_by_size, args.cost_documents, args.rounds)
    base = per_size[sizes[0]]
    rows = []
    for size in sizes:
        r = per_size[size]
        r["embed_cost"] = cost[size]
        for m in MODES:
            delta, se = paired(base["per_query_ndcg@10"][m], r["per_query_ndcg@10"][m])
            r["modes"][m].update({"delta_ndcg@10": delta, "delta_se": se})
            rows.append([size, m, r["chunks"], r["chunks_per_document"], r["modes"][m]["ndcg@10"],
                         f"{delta:+.4f} ± {se:.4f}", r["modes"][m]["recall@100"], cost[size]["ratio_to_first"]])
    print_table(["max_tokens", "mode", "chunks", "chunks/doc", "nDCG@10", f"vs {sizes[0]} (± SE)", "recall@100",
                 "embed time ratio"],
                rows, title=f"{name} {args.split}: {len(qids)} queries, chunk size against retrieval")
    result = {"dataset": name, "dataset_dir": os.path.relpath(dataset), "split": args.split, "queries": len(qids),
              "baseline": sizes[0], "sizes": list(per_size.values()), "machine": machine()}
    write_json(args.out or RESULTS / f"chunk-sizes-{name}-{args.split}.json", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
