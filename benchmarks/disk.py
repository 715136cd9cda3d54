"""Bounded disk: the state after many incremental runs against the state after the first.

    python -m benchmarks.disk [DATASET_DIR] [--runs 100] [--maintain-every 10] [--docs N] [--out FILE.json]

Why: every run adds to the state (an index version with its data, deletion and index files, a
segment in each cache, gate records and eval reports); maintenance (``ingest_platform.maintenance``,
the daily ``maintenance`` asset) is what keeps that bounded. Here the corpus (default SciFact as
records) is built once, then ``--runs`` incremental runs each change one document (a sentence added
to a different document every time), as ``pipeline.run_all`` runs them, promoted like the
scheduled pipeline; maintenance runs after every ``--maintain-every`` runs (the schedule is daily:
one maintenance per N runs stands for N runs a day). The state's bytes (the whole home, as
``maintenance.disk_usage`` counts them) are recorded after every run. Goal: after the last run and
its maintenance, at most 1.3x the state after the first build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import (RESULTS, SCIFACT, WORK, machine, make_settings, print_table, read_jsonl, revise_one,
                               write_json, write_jsonl)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.disk", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--maintain-every", type=int, default=10)
    ap.add_argument("--docs", type=int, help="the first N documents only")
    ap.add_argument("--work", type=Path, default=WORK / "disk")
    ap.add_argument("--out", type=Path, default=RESULTS / "disk.json")
    args = ap.parse_args(argv)

    from ingest_platform.maintenance import disk_usage, maintain
    from ingest_platform.pipeline import run_all

    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    records = [r for i, r in enumerate(read_jsonl(args.dataset.resolve() / "corpus.jsonl"))
               if args.docs is None or i < args.docs]
    corpus = write_jsonl(work / "corpus.jsonl", records)
    settings = make_settings(work / "home", corpus, "corpus")
    t = time.perf_counter()
    first = run_all(settings)
    build_s = time.perf_counter() - t
    assert first["promotion"]["promoted"], first["promotion"]
    base = disk_usage(settings.state)
    rows = [{"run": 0, "bytes": base, "seconds": build_s, "maintained": False, "freed": 0}]
    print(f"first build: {build_s:.0f}s, state {base / 2**20:.1f} MiB", flush=True)
    for i in range(1, args.runs + 1):
        revise_one(records, i)
        write_jsonl(corpus, records)
        t = time.perf_counter()
        out = run_all(settings)
        seconds = time.perf_counter() - t
        freed = 0
        maintained = i % args.maintain_every == 0 or i == args.runs
        if maintained:
            freed = maintain(settings).bytes_freed
        rows.append({"run": i, "bytes": disk_usage(settings.state), "seconds": seconds, "maintained": maintained,
                     "freed": freed, "promoted": bool(out.get("promotion", {}).get("promoted"))})
        if maintained:
            print(f"run {i}: {seconds:.1f}s, state {rows[-1]['bytes'] / 2**20:.1f} MiB after maintenance "
                  f"(freed {freed / 2**20:.1f} MiB)", flush=True)
    peak = max(r["bytes"] for r in rows)
    # The ratio after the last run depends on where it falls: for ``keep_promoted`` runs after a
    # compaction that rewrote the large fragment, the rollback targets still hold the old one.
    # So every maintenance's ratio is reported, and how many missed the goal.
    after_each = [r["bytes"] / base for r in rows if r["maintained"]]
    result = {
        "dataset": os.path.relpath(args.dataset), "documents": len(records), "runs": args.runs,
        "maintain_every": args.maintain_every, "first_build_s": build_s,
        "state_bytes_after_first": base, "state_bytes_after_last": rows[-1]["bytes"],
        "ratio": rows[-1]["bytes"] / base, "peak_ratio_between_maintenance": peak / base,
        "ratio_after_each_maintenance": after_each, "maintenances_over_goal": sum(r > 1.3 for r in after_each),
        "goal": 1.3, "goal_met": rows[-1]["bytes"] / base <= 1.3, "per_run": rows, "machine": machine(),
    }
    print_table(["", "MiB", "ratio to the first build's state"], [
        ["after the first build", base / 2**20, 1.0],
        [f"after {args.runs} incremental runs (maintenance every {args.maintain_every})", rows[-1]["bytes"] / 2**20,
         result["ratio"]],
        ["largest after a maintenance", max(after_each) * base / 2**20, max(after_each)],
        ["largest between two maintenances", peak / 2**20, result["peak_ratio_between_maintenance"]],
    ], title=f"State size of {len(records)} documents, one document changed per run (goal <= 1.3)")
    print(f"{result['maintenances_over_goal']} of {len(after_each)} maintenances left more than 1.3x: "
          + ", ".join(f"{r:.2f}" for r in after_each))
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
