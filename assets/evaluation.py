"""The golden-set evaluation of the candidate index against production (feeds the ``eval_gate``).

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation by identity.
"""

import dagster as dg

from ingest_platform import evaluation
from ingest_platform.reporting import md_table
from resources import PlatformSettings

GROUP = "index"


# Upstream by key, not by import: assets/index.py imports this module (production_index depends on
# index_eval), so importing candidate_index from there would be circular.
@dg.asset(group_name=GROUP, deps=[dg.AssetKey("candidate_index")], kinds={"python", "duckdb"})
def index_eval(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """The golden set run through the real query function against the candidate version and the
    current production version: recall@k, hit@k, MRR@10, nDCG@10 overall, per tag and per query.
    Both are appended to the eval history (``eval.duckdb``); ``eval_gate`` judges the candidate."""
    s = platform.get()
    if not s.eval.golden_file:
        context.log.warning("no golden set configured ([eval] golden_file): the eval gate is skipped")
        return dg.MaterializeResult(metadata={"skipped": True, "reason": "no golden set configured"})
    candidate, production = evaluation.evaluate_candidate_and_production(s)
    evaluation.save_reports(s, candidate, production)
    evaluation.record_history(s, [r for r in (candidate, production) if r is not None], run_id=context.run_id)
    verdict = evaluation.compare(candidate, production, evaluation.floors(s), s.eval.max_regression)
    k = candidate.k
    meta: dict = {
        "candidate_version": candidate.version,
        "production_version": production.version if production else "none",
        "golden_file": candidate.golden_file, "queries": candidate.n_queries, "k": k, "mode": candidate.mode,
        **{evaluation.label(m, k): dg.MetadataValue.float(round(v, 4))
           for m, v in candidate.overall.items() if m in evaluation.METRICS},
        "overall": dg.MetadataValue.md(md_table(verdict.metrics)),
        "per_tag": dg.MetadataValue.md(md_table(evaluation.tag_rows(candidate, production))),
        "queries_not_fully_answered": dg.MetadataValue.md(md_table(evaluation.query_rows(candidate, only_misses=True))),
        "queries_worse_than_production": dg.MetadataValue.md(md_table(
            verdict.worse, ["id", "loss", *[evaluation.label(m, k) for m in evaluation.GATED], "query"])),
        "history": dg.MetadataValue.md(md_table(
            [{c: r.get(c) for c in ("at", "ref", "version", *evaluation.GATED)} for r in evaluation.history(s, limit=30)],
            ["at", "ref", "version", *evaluation.GATED])),
        "seconds": round(candidate.seconds + (production.seconds if production and production.version != candidate.version else 0), 3),
    }
    plot = evaluation.plot_history(s, s.state / "evals" / "history.png")
    if plot is not None:
        meta["history_plot"] = dg.MetadataValue.md(f"![eval history]({evaluation.png_data_uri(plot)})")
        meta["history_plot_file"] = dg.MetadataValue.path(str(plot))
    return dg.MaterializeResult(metadata=meta)
