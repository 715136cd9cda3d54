"""Incremental cost: a full build, then a no-op run, then a run after changing 1% of the documents.

    python -m benchmarks.incremental [DATASET_DIR] [--docs N] [--fraction 0.01] [--out FILE.json]

Each run is ``pipeline.run_all`` in a fresh process (as a scheduled run would be), on a copy of
the corpus under the work folder. Reported: the run's wall time (inside ``run_all``, and of the
whole process including imports), as a fraction of the full build's, and how many chunks each run
re-embedded, against the exact expectation: 0 for the no-op run; for the 1% run, the chunks of the
changed documents whose text the embedding cache did not hold yet (an edit that leaves a chunk's
text unchanged costs no embedding). Goals: no-op <= 5%, 1% run <= 8% of the full build.
"""

from __future__ import annotations

import os
import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, SCIFACT, WORK, machine, make_settings, print_table, read_jsonl, write_json


def child(corpus: Path, home: Path, result: Path) -> None:
    from ingest_platform.pipeline import run_all

    settings = make_settings(home, corpus, "corpus")
    t = time.perf_counter()
    stages = run_all(settings, promote=True)
    out = {"run_all_s": time.perf_counter() - t, "stages": stages}
    result.write_text(json.dumps(out, default=str))


def run(corpus: Path, home: Path, label: str, in_process: bool) -> dict:
    result = home.parent / f"{label}.result.json"
    t = time.perf_counter()
    if in_process:
        child(corpus, home, result)
    else:
        subprocess.run([sys.executable, "-m", "benchmarks.incremental", "--child", str(corpus), str(home), str(result)],
                       check=True, cwd=Path(__file__).resolve().parents[1])
    out = json.loads(result.read_text())
    out["process_s"] = time.perf_counter() - t
    return out


def change_documents(corpus: Path, fraction: float, seed: int = 7) -> list[str]:
    """Rewrite ``corpus`` with ``fraction`` of its documents edited (a sentence added at the start
    of the text, which shifts every chunk of the document). Returns the changed ids."""
    recs = list(read_jsonl(corpus))
    n = max(1, round(fraction * len(recs)))
    chosen = set(random.Random(seed).sample(range(len(recs)), n))
    with open(corpus, "w", encoding="utf-8") as out:
        for i, rec in enumerate(recs):
            if i in chosen:
                rec = {**rec, "text": f"Revised record {i}: corrections were made after review. " + (rec.get("text") or "")}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return [str(recs[i]["_id"]) for i in sorted(chosen)]


def expected_embeddings(settings, changed: list[str], cached_before: set[str]) -> dict:
    from ingest_platform.pipeline import load_enriched

    table = load_enriched(settings, ["doc_id", "text_sha256"]).to_pylist()
    ids = {f"corpus:{c}" for c in changed}
    hashes = [r["text_sha256"] for r in table if r["doc_id"] in ids]
    return {"changed_docs_chunks": len(hashes), "new_texts": len(set(hashes) - cached_before)}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        return {}
    ap = argparse.ArgumentParser(prog="python -m benchmarks.incremental", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--docs", type=int, help="use the first N documents only")
    ap.add_argument("--fraction", type=float, default=0.01, help="share of documents changed (default 0.01)")
    ap.add_argument("--in-process", action="store_true", help="no subprocesses (smoke tests)")
    ap.add_argument("--work", type=Path, default=WORK / "incremental")
    ap.add_argument("--out", type=Path, default=RESULTS / "incremental.json")
    args = ap.parse_args(argv)

    from ingest_platform.embedding import EmbeddingCache
    from ingest_platform.models import model_id

    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    corpus = work / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as out:
        for i, rec in enumerate(read_jsonl(args.dataset.resolve() / "corpus.jsonl")):
            if args.docs is not None and i >= args.docs:
                break
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    home = work / "home"
    settings = make_settings(home, corpus, "corpus")

    full = run(corpus, home, "full", args.in_process)
    noop = run(corpus, home, "noop", args.in_process)
    cache = EmbeddingCache(settings.state, model_id(settings.embedding.model), 384)
    before = cache.keys()
    changed = change_documents(corpus, args.fraction)
    partial = run(corpus, home, "partial", args.in_process)
    expect = expected_embeddings(settings, changed, before)

    def row(label, r, want):
        e = r["stages"]["embed"]
        return {"label": label, "run_all_s": r["run_all_s"], "process_s": r["process_s"],
                "fraction_of_full": r["run_all_s"] / full["run_all_s"],
                "process_fraction_of_full": r["process_s"] / full["process_s"],
                "embedded": e["embedded"], "expected_embedded": want,
                "upserted_docs": r["stages"]["index"]["upserted_docs"],
                "stages_s": {s: v["wall_s"] for s, v in r["stages"].items()}}

    docs = full["stages"]["enrich"]["documents"]
    runs = [row("full build", full, full["stages"]["embed"]["unique_texts"]),
            row("no-op", noop, 0),
            row(f"{len(changed)} docs changed ({args.fraction:.0%})", partial, expect["new_texts"])]
    goals = {"no-op": 0.05, "changed": 0.08}
    result = {"dataset": os.path.relpath(args.dataset), "documents": docs, "chunks": full["stages"]["index"]["rows"],
              "changed_docs": len(changed), "changed_docs_chunks": expect["changed_docs_chunks"],
              "runs": runs, "goals": goals,
              "goals_met": {"no-op": runs[1]["fraction_of_full"] <= 0.05 and runs[1]["embedded"] == 0,
                            "changed": runs[2]["fraction_of_full"] <= 0.08
                            and runs[2]["embedded"] == expect["new_texts"]},
              "machine": machine()}
    print_table(["run", "run_all s", "fraction of full", "process s", "process fraction", "embedded",
                 "expected", "docs upserted"],
                [[r["label"], r["run_all_s"], r["fraction_of_full"], r["process_s"], r["process_fraction_of_full"],
                  r["embedded"], r["expected_embedded"], r["upserted_docs"]] for r in runs],
                title=f"Incremental cost on {docs} documents, {result['chunks']} chunks "
                      f"(goals: no-op <= 5%, 1% <= 8% of the full build)")
    steps = list(dict.fromkeys(k for r in runs for k in r["stages_s"]))  # promotion only runs when there is one
    print_table(["run", *steps], [[r["label"], *(r["stages_s"].get(k) for k in steps)] for r in runs],
                title="Seconds per stage")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
