"""The golden-set evaluation of the candidate index against production (feeds the ``eval_gate``).

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation by identity.
"""

import dagster as dg

from ingest_platform import evaluation, state
from resources import PlatformSettings

from . import metadata as m_

GROUP = "index"


# Upstream by key, not by import: assets/index.py imports this module (production_index depends on
# index_eval), so importing candidate_index from there would be circular.
@dg.asset(group_name=GROUP, deps=[dg.AssetKey("candidate_index")], kinds={"python", "duckdb"})
def index_eval(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """The golden set run through the real query function against the candidate version and the
    current production version: recall@k, hit@k, MRR@10, nDCG@10 overall, per tag and per query.
    Both are appended to the eval history (Parquet files DuckDB reads); ``eval_gate`` judges the candidate."""
    s = platform.get()
    if not s.eval.golden_file:
        context.log.warning("no golden set configured ([eval] golden_file): the eval gate is skipped")
        return dg.MaterializeResult(metadata={"skipped": m_.text("yes"), "reason": m_.text("no golden set configured")})
    candidate, production = evaluation.evaluate_candidate_and_production(s)
    evaluation.save_reports(s, candidate, production)
    past = evaluation.history(s)
    # A version already in the history with the same golden set and settings is not added again:
    # a run that rebuilt nothing must not make the history (and its plot) repeat a version.
    seen = {(r["ref"], r["version"], r["k"], r["mode"], r["queries"]) for r in past}
    fresh = [r for r in (candidate, production)
             if r is not None and (r.ref, r.version, r.k, r.mode, r.n_queries) not in seen]
    if fresh:
        evaluation.record_history(s, fresh, run_id=context.run_id)
    verdict = evaluation.compare(candidate, production, evaluation.floors(s), s.eval.max_regression)
    k = candidate.k
    label = {m: evaluation.label(m, k) for m in evaluation.METRICS}
    meta: dict = {
        # Scores trend (numbers: the Plots tab charts them); what they are measured with is text.
        **{label[m]: dg.MetadataValue.float(round(v, 4)) for m, v in candidate.overall.items() if m in evaluation.METRICS},
        "candidate_version": m_.text(candidate.version),
        "production_version": m_.text(production.version if production else "none"),
        "golden_file": m_.text(candidate.golden_file), "queries": m_.text(candidate.n_queries),
        "k": m_.text(k), "mode": m_.text(candidate.mode),
        "overall": m_.inferred(verdict.metrics),
        "per_tag": m_.inferred(evaluation.tag_rows(candidate, production)),
        "per_set": m_.inferred(evaluation.set_rows(candidate, production)),
        "queries_not_fully_answered": m_.inferred(evaluation.query_rows(candidate, only_misses=True)),
        "queries_worse_than_production": m_.inferred(
            [{c: r.get(c) for c in ["id", "loss", *[label[g] for g in evaluation.GATED], "query"]} for r in verdict.worse]),
        "history_rows_added": len(fresh),
        "history": m_.inferred([{c: r.get(c) for c in ("at", "ref", "version", *evaluation.GATED)}
                                for r in evaluation.history(s, limit=30)]),
        "seconds": round(candidate.seconds + (production.seconds if production and production.version != candidate.version else 0), 3),
    }
    trend = evaluation.history_trend_md(s)
    if trend is not None:
        meta["history_trend"] = dg.MetadataValue.md(trend)  # short enough for the UI to show inline
    plot = evaluation.plot_history(s, state.eval_plot(s.state))
    if plot is not None:
        meta["history_plot"] = dg.MetadataValue.md(f"![eval history by index version]({evaluation.png_data_uri(plot)})")
    return dg.MaterializeResult(metadata=meta)
