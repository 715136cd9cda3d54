"""The eval gate: a blocking check that keeps a candidate that retrieves worse out of production."""

from __future__ import annotations

import dagster as dg

from assets.evaluation import index_eval
from ingest_platform import evaluation
from ingest_platform.index import CANDIDATE
from assets import metadata as m
from resources import IndexStoreResource, PlatformSettings

from .gating import gate_result


@dg.asset_check(asset=index_eval, blocking=True,
                description="Keeps a new index that finds the golden answers worse out of production: it "
                            "fails when recall@k or MRR@10 is below its floor ([eval] min_recall_at_k, "
                            "min_mrr_at_10), or when recall@k, hit@k, MRR@10 or nDCG@10 is more than "
                            "[eval] max_regression below production's. The first build is judged by the "
                            "floors. Blocking: promotion re-checks this verdict for the candidate version.")
def eval_gate(platform: PlatformSettings, index_store: IndexStoreResource) -> dg.AssetCheckResult:
    s = platform.get()
    version = index_store.store.version_of(CANDIDATE)
    if not s.eval.golden_file:
        return gate_result(s.state, version, "eval_gate", True, {"skipped": True},
                           description="skipped: no golden set configured ([eval] golden_file)")
    try:
        candidate, production = evaluation.load_reports(s, version)
    except FileNotFoundError as exc:
        return gate_result(s.state, version, "eval_gate", False, {}, description=str(exc))
    verdict = evaluation.compare(candidate, production, evaluation.floors(s), s.eval.max_regression)
    k = candidate.k
    meta: dict = {
        "production_version": m.text(verdict.production_version if verdict.production_version is not None else "none"),
        "max_regression": m.text(s.eval.max_regression),
        **{f"floor_{name}": m.text(v) for name, v in verdict.floors.items()},
        **{f"candidate_{g}": round(candidate.overall[g], 4) for g in evaluation.GATED if g in candidate.overall},
        "queries_worse": len(verdict.worse),
        "reasons": m.table([{"reason": r} for r in verdict.reasons], [("reason", "string", "why the gate failed")]),
        "metrics": m.inferred(verdict.metrics),
        "worse_queries": m.inferred([{c: r.get(c) for c in [
            "id", "loss", *[evaluation.label(g, k) for g in evaluation.GATED], "tags", "query",
            "production_top", "candidate_top"]} for r in verdict.worse]),
    }
    if production is not None:
        meta.update({f"production_{g}": round(production.overall[g], 4) for g in evaluation.GATED if g in production.overall})
    description = "; ".join(verdict.reasons) if verdict.reasons else (
        "floors met" + (f" and no regression against production v{production.version}" if production else
                        " (first build: no production to compare with)"))
    return gate_result(s.state, version, "eval_gate", verdict.passed, meta, description=description)
