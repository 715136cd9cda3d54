"""The eval gate: a blocking check that keeps a candidate that retrieves worse out of production."""

from __future__ import annotations

import dagster as dg

from assets.evaluation import index_eval
from ingest_platform import evaluation
from ingest_platform.index import CANDIDATE
from ingest_platform.reporting import md_table
from resources import IndexStoreResource, PlatformSettings

from .gating import gate_result


@dg.asset_check(asset=index_eval, blocking=True,
                description="Fails when the candidate misses an absolute floor ([eval] min_recall_at_k, "
                            "min_mrr_at_10) or falls more than [eval] max_regression below production on "
                            "recall@k, hit@k, MRR@10 or nDCG@10; the first build is judged by the floors. "
                            "Records its verdict for the candidate version, which promotion re-verifies.")
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
        "production_version": verdict.production_version if verdict.production_version is not None else "none",
        "max_regression": s.eval.max_regression,
        **{f"floor_{m}": v for m, v in verdict.floors.items()},
        **{f"candidate_{m}": round(candidate.overall[m], 4) for m in evaluation.GATED if m in candidate.overall},
        "queries_worse": len(verdict.worse),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in verdict.reasons) or "_none_"),
        "metrics": dg.MetadataValue.md(md_table(verdict.metrics)),
        "worse_queries": dg.MetadataValue.md(md_table(
            verdict.worse, ["id", "loss", *[evaluation.label(m, k) for m in evaluation.GATED], "tags", "query",
                            "production_top", "candidate_top"])),
    }
    if production is not None:
        meta.update({f"production_{m}": round(production.overall[m], 4) for m in evaluation.GATED if m in production.overall})
    description = "; ".join(verdict.reasons) if verdict.reasons else (
        "floors met" + (f" and no regression against production v{production.version}" if production else
                        " (first build: no production to compare with)"))
    return gate_result(s.state, version, "eval_gate", verdict.passed, meta, description=description)
