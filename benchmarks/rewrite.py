"""Does the glossary rewriter help? The sample corpus's golden set with and without ``data/glossary.txt``.

    python -m benchmarks.rewrite [--glossary data/glossary.txt] [--out FILE.json]

The sample corpus (``ingest-platform.toml``) is indexed once under ``benchmarks/.work/rewrite-sample``
(reused on later runs), then the golden set (``data/golden.jsonl``) is scored through the real query
function in keyword and hybrid mode, without a rewriter and with the glossary rewriter, overall and
per tag. Caveat, stated with the numbers: the glossary was written for this corpus's domain terms by
someone who had read its golden queries, so it shows what a domain glossary can do for such
queries (the ``paraphrase`` tag), not what an unseen glossary does for unseen queries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import REPO, RESULTS, WORK, machine, print_table, write_json

MODES = ("keyword", "hybrid")
METRICS = ("recall_at_k", "mrr_at_10", "ndcg_at_10")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rewrite", description=__doc__.split("\n\n")[0])
    ap.add_argument("--glossary", type=Path, default=REPO / "data" / "glossary.txt")
    ap.add_argument("--work", type=Path, default=WORK / "rewrite-sample")
    ap.add_argument("--out", type=Path, default=RESULTS / "rewrite.json")
    args = ap.parse_args(argv)

    from ingest_platform import evaluation, pipeline
    from ingest_platform.config import load_settings
    from ingest_platform.query import Retriever
    from ingest_platform.rewrite import GlossaryRewriter

    settings = load_settings(REPO / "ingest-platform.toml", home=str(args.work.resolve() / "state"))
    pipeline.run_all(settings)
    rewriter = GlossaryRewriter(args.glossary)
    result: dict = {"glossary": str(args.glossary.relative_to(REPO) if args.glossary.is_relative_to(REPO) else args.glossary),
                    "rules": len(rewriter.rules), "machine": machine(), "runs": {}}
    rows = []
    for mode in MODES:
        for name, rw in (("none", None), ("glossary", rewriter)):
            r = Retriever(settings=settings, trace=False, cache_size=0, rewriter=rw)
            report = evaluation.evaluate(settings, "production", mode=mode, retriever=r)
            scopes = {"overall": report.overall, **{f"tag {t}": v for t, v in report.per_tag.items()}}
            result["runs"][f"{mode}/{name}"] = {s: {m: v.get(m) for m in (*METRICS, "queries")} for s, v in scopes.items()}
            rewritten = sum(1 for q in evaluation.load_golden(settings.eval.golden_file) if rewriter.expansions(q.query))
            result["runs"][f"{mode}/{name}"]["queries_rewritten"] = rewritten if rw else 0
    for mode in MODES:
        base, glo = result["runs"][f"{mode}/none"], result["runs"][f"{mode}/glossary"]
        for scope in base:
            if scope == "queries_rewritten":
                continue
            rows.append([mode, scope, int(base[scope]["queries"]), *[base[scope][m] for m in METRICS],
                         *[glo[scope][m] for m in METRICS], glo[scope]["ndcg_at_10"] - base[scope]["ndcg_at_10"]])
    print_table(["mode", "scope", "queries", "recall@10", "MRR@10", "nDCG@10", "recall@10 +g", "MRR@10 +g",
                 "nDCG@10 +g", "Δ nDCG@10"], rows,
                title=f"sample golden set without / with the glossary ({result['rules']} rules; "
                      f"{result['runs']['hybrid/glossary']['queries_rewritten']} queries rewritten)")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
