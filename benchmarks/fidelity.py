"""Fidelity: the same texts as records and as real files (PDF, DOCX, HTML), through the file path.

    python -m benchmarks.fidelity [DATASET_DIR] [--formats pdf,docx,html] [--limit-docs N]
                                  [--limit-queries N] [--work DIR] [--out FILE.json]

Why: a platform that scores well on clean records can still lose on the files users have (one
element per printed line, false headings, fragments). Here the corpus is rendered as files by
``benchmarks.render`` (one document per file, named by its BEIR id), each format is ingested from
an empty state through the directory source exactly as ``ingest-platform run --source DIR`` does,
and the test queries are run through ``Retriever.search`` in every mode. Beside each: the records
path (the reference every format must stay within 0.01 nDCG@10 of) and the naive whole-document
script (``benchmarks.naive``) on the same files.

Reported per format: nDCG@10 / recall@100 / MRR@10 per mode, build wall time and its ratio to
the records build, parse documents/s, chunks per document, and chunks under the minimum size.
With ``--limit-docs`` the corpus is cut to the judged documents of the scored queries plus a
random sample of the rest (a smaller, quicker, harder-to-compare run: the JSON says so).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from benchmarks.beir import evaluate, run_queries, score
from benchmarks.common import (REPO, RESULTS, SCIFACT, WORK, load_qrels, load_queries, machine, make_settings,
                               print_table, read_jsonl, source_name, write_json)
from benchmarks.render import FORMATS, file_name, render

MODES = ("keyword", "vector", "hybrid")


def subset(dataset: Path, qids: list[str], limit_docs: int | None, out: Path) -> Path:
    """``corpus.jsonl`` cut to the judged documents of ``qids`` plus random others (up to
    ``limit_docs``); the whole corpus when no limit is given."""
    corpus = dataset / "corpus.jsonl"
    if not limit_docs:
        return corpus
    qrels = load_qrels(dataset, "test")
    judged = {d for q in qids for d in qrels.get(q, {})}
    records = list(read_jsonl(corpus))
    others = [r for r in records if str(r["_id"]) not in judged]
    random.Random(3).shuffle(others)
    keep = judged | {str(r["_id"]) for r in others[: max(0, limit_docs - len(judged))]}
    path = out / f"corpus-{limit_docs}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in records:
            if str(r["_id"]) in keep:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def build(home: Path, source: Path, name: str) -> tuple[object, dict, float]:
    from ingest_platform.pipeline import run_all

    settings = make_settings(home, source, name)
    started = time.perf_counter()
    stages = run_all(settings, promote=True)
    return settings, stages, time.perf_counter() - started


def chunk_stats(settings) -> dict:
    from ingest_platform.chunking import undersized
    from ingest_platform.pipeline import chunk_table

    chunks = chunk_table(settings).read_all(["doc_id", "token_count"])
    docs = len(set(chunks["doc_id"].to_pylist()))
    fragments, _ = undersized(chunks, settings.chunking.min_tokens)
    return {"chunks": chunks.num_rows, "documents": docs, "chunks_per_document": chunks.num_rows / max(1, docs),
            "chunks_under_min_tokens": fragments}


def doc_ids_by_file(runs: dict, fmt: str) -> dict:
    """Document ids of the file path (``<source>:<id>.<fmt>``) back to BEIR ids."""
    suffix = f".{fmt}"

    def strip(run: dict) -> dict:
        return {q: [d[: -len(suffix)] if d.endswith(suffix) else d for d in ranked] for q, ranked in run.items()}

    return {mode: {depth: strip(run) for depth, run in by_depth.items()} for mode, by_depth in runs.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fidelity", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--limit-docs", type=int, help="index only the judged documents plus random others, N in all")
    ap.add_argument("--limit-queries", type=int)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-naive", action="store_true")
    args = ap.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    dataset = args.dataset.resolve()
    name = source_name(dataset)
    work = (args.work or WORK / f"fidelity-{name}{f'-{args.limit_docs}' if args.limit_docs else ''}").resolve()
    queries = load_queries(dataset)
    qrels = {q: r for q, r in load_qrels(dataset, "test").items() if q in queries}
    qids = [q for q in qrels if any(v > 0 for v in qrels[q].values())][: args.limit_queries]
    qrels = {q: qrels[q] for q in qids}
    corpus = subset(dataset, qids, args.limit_docs, work)
    ids = {str(r["_id"]) for r in read_jsonl(corpus)}
    texts = {q: queries[q] for q in qids}

    started = time.perf_counter()
    folders = render(corpus, work / "files", tuple(formats), ids=ids)
    render_s = time.perf_counter() - started

    rows: dict[str, dict] = {}
    # The records path first: the reference.
    settings, stages, build_s = build(work / "records", corpus, name)
    runs, _ = run_queries(settings, name, texts, qids)
    rows["records"] = {"build_s": build_s, "metrics": {m: score(runs[m], qrels) for m in MODES},
                       "parse_docs_per_s": None, "stages_s": {k: v["wall_s"] for k, v in stages.items()},
                       **chunk_stats(settings)}
    print(f"records: built in {build_s:.0f}s", flush=True)
    for fmt in formats:
        settings, stages, build_s = build(work / fmt, folders[fmt], fmt)
        runs, _ = run_queries(settings, fmt, texts, qids)
        runs = doc_ids_by_file(runs, fmt)
        parse = stages["parse"]
        row = {"build_s": build_s, "build_ratio_to_records": build_s / rows["records"]["build_s"],
               "metrics": {m: score(runs[m], qrels) for m in MODES},
               "parse_docs_per_s": parse["parsed"] / parse["seconds"] if parse["seconds"] else None,
               "parse_failed": parse["failed"], "stages_s": {k: v["wall_s"] for k, v in stages.items()},
               **chunk_stats(settings)}
        # The embed stage does the same work on every path (the same chunk texts), yet its wall
        # time moves with the machine's load; this ratio swaps in the records path's embed time,
        # so what is left is what the files add: parsing and reconstruction.
        records_embed = rows["records"]["stages_s"].get("embed", 0.0)
        row["build_ratio_same_embed_time"] = (
            (build_s - row["stages_s"].get("embed", 0.0) + records_embed) / rows["records"]["build_s"])
        if not args.no_naive:
            from benchmarks.naive import NaiveIndex, document_text

            files = sorted(folders[fmt].glob(f"*.{fmt}"))
            t = time.perf_counter()
            index = NaiveIndex([p.stem for p in files], [document_text(p) for p in files], work / f"naive-{fmt}")
            naive_runs = index.runs({q: texts[q] for q in qids})
            row["naive"] = {m: evaluate(naive_runs[m], qrels) for m in MODES}
            row["naive_build_s"] = time.perf_counter() - t
        row["delta_vs_records"] = {m: row["metrics"][m]["ndcg@10"] - rows["records"]["metrics"][m]["ndcg@10"]
                                   for m in MODES}
        rows[fmt] = row
        print(f"{fmt}: built in {build_s:.0f}s", flush=True)

    table = []
    for fmt, row in rows.items():
        for m in MODES:
            table.append([fmt, m, row["metrics"][m]["ndcg@10"], row["metrics"][m]["recall@100"],
                          row.get("delta_vs_records", {}).get(m), (row.get("naive") or {}).get(m, {}).get("ndcg@10")])
    print_table(["path", "mode", "nDCG@10", "recall@100", "vs records", "naive script nDCG@10"], table,
                title=f"{name} test ({len(qids)} queries, {len(ids)} documents): records vs files vs the naive script")
    print_table(["path", "build s", "ratio to records", "ratio, records' embed time", "embed s", "parse docs/s",
                 "chunks", "chunks/doc", "chunks < min"],
                [[fmt, r["build_s"], r.get("build_ratio_to_records"), r.get("build_ratio_same_embed_time"),
                  r["stages_s"].get("embed"), r["parse_docs_per_s"], r["chunks"],
                  r["chunks_per_document"], r["chunks_under_min_tokens"]] for fmt, r in rows.items()],
                title="Builds (each from an empty state, in this process)")
    goals = {fmt: {"within_0.01_of_records": all(abs(d) <= 0.01 for d in r["delta_vs_records"].values()),
                   "hybrid_beats_naive": (r["metrics"]["hybrid"]["ndcg@10"] > r["naive"]["hybrid"]["ndcg@10"])
                   if r.get("naive") else None,
                   "build_within_1.3x_records": r["build_ratio_to_records"] <= 1.3}
             for fmt, r in rows.items() if fmt != "records"}
    out = {"dataset": name, "documents": len(ids), "queries": len(qids), "limit_docs": args.limit_docs,
           "render_s": render_s, "paths": rows, "goals": goals, "machine": machine(),
           "corpus": os.path.relpath(corpus, REPO)}
    default = RESULTS / f"fidelity-{name}{f'-{args.limit_docs}' if args.limit_docs else ''}.json"
    write_json(args.out or default, out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
