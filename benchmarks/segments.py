"""Query latency of an index between compactions against the same index freshly built.

    python -m benchmarks.segments [DATASET_DIR] [--writes N] [--queries 300] [--out FILE.json]

Why: an index sync no longer compacts after every write (``ingest_platform.index.settle``). Each
write adds a small fragment and a delta segment to every index until, after ``[index] max_deltas`` writes,
they are merged. Serving reads whatever the production version holds, so the latency that counts
is the one just before a compaction, not only a fresh build's.

The corpus (default SciFact, as records) is built once and the state copied: the copy stays as
built (one fragment, one segment per index); the original then takes ``--writes`` runs that each
change one document, promoted like the scheduled pipeline (by default ``[index] max_deltas`` - 1,
the most a table holds before ``settle`` compacts). With more writes than that the table is
compacted on the way, which the reported shapes show. Then the dataset's test queries go through ``Retriever.search`` on both, per
mode, interleaved query by query so machine noise hits both alike (result cache off, everything
else as configured by default). Reports p50/p95/p99 per mode and state, and the ratio of p50s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import (RESULTS, SCIFACT, WORK, load_queries, machine, make_settings, print_table,
                               read_jsonl, revise_one, write_json, write_jsonl)
from benchmarks.query_latency import MODES, pct


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.segments", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--writes", type=int, help="default: [index] max_deltas - 1, the most before a compaction")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--work", type=Path, default=WORK / "segments")
    ap.add_argument("--out", type=Path, default=RESULTS / "segments.json")
    args = ap.parse_args(argv)

    from ingest_platform.index import MAX_DELTAS
    from ingest_platform.pipeline import index_store, run_all
    from ingest_platform.query import Retriever

    args.writes = MAX_DELTAS - 1 if args.writes is None else args.writes
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    records = list(read_jsonl(args.dataset.resolve() / "corpus.jsonl"))
    corpus = write_jsonl(work / "corpus.jsonl", records)
    deltas = make_settings(work / "deltas", corpus, "corpus")
    started = time.perf_counter()
    run_all(deltas)
    build_s = time.perf_counter() - started
    shutil.copytree(work / "deltas", work / "fresh")
    fresh = make_settings(work / "fresh", corpus, "corpus")
    for i in range(1, args.writes + 1):
        revise_one(records, i)
        write_jsonl(corpus, records)
        assert run_all(deltas)["promotion"]["promoted"]

    def shape(settings) -> dict:
        table = index_store(settings).checkout("production")
        return {"version": table.version, "fragments": len(table.to_lance().get_fragments()),
                "index_segments": max(table.index_stats(ix.name).num_indices for ix in table.list_indices())}

    shapes = {"fresh": shape(fresh), "deltas": shape(deltas)}
    print(f"built in {build_s:.0f}s; {shapes}", flush=True)

    queries = list(load_queries(args.dataset.resolve()).values())[: args.queries]
    retrievers = {"fresh": Retriever(settings=fresh, cache_size=0), "deltas": Retriever(settings=deltas, cache_size=0)}
    for r in retrievers.values():  # warm: model, in-memory vectors, table handles
        r._encoder(r._pin()).memo_size = 0  # both embed every query: the encoder is shared
        for mode in MODES:
            r.search(queries[0], 10, mode=mode)
    times: dict[str, dict[str, list[float]]] = {s: {m: [] for m in MODES} for s in retrievers}
    for q in queries:
        for mode in MODES:
            for name, r in retrievers.items():
                t = time.perf_counter()
                r.search(q, 10, mode=mode)
                times[name][mode].append((time.perf_counter() - t) * 1000)

    rows, result_modes = [], {}
    for mode in MODES:
        per = {name: {"p50_ms": pct(times[name][mode], 50), "p95_ms": pct(times[name][mode], 95),
                      "p99_ms": pct(times[name][mode], 99)} for name in retrievers}
        ratio = per["deltas"]["p50_ms"] / per["fresh"]["p50_ms"]
        result_modes[mode] = {**per, "p50_ratio_deltas_to_fresh": ratio}
        rows.append([mode, per["fresh"]["p50_ms"], per["deltas"]["p50_ms"], ratio, per["fresh"]["p99_ms"],
                     per["deltas"]["p99_ms"]])
    print_table(["mode", "fresh p50 ms", f"{args.writes} writes p50 ms", "ratio", "fresh p99 ms",
                 f"{args.writes} writes p99 ms"], rows,
                title=f"Retriever.search on {len(records)} documents, {len(queries)} queries, interleaved")
    result = {"dataset": os.path.relpath(args.dataset), "documents": len(records), "queries": len(queries),
              "writes": args.writes, "max_deltas": MAX_DELTAS, "build_s": build_s, "shapes": shapes,
              "modes": result_modes, "machine": machine()}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
