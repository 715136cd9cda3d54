"""Index stages: embeddings (cached) -> candidate index version -> promotion to production."""


import dagster as dg

from ingest_platform import gates, pipeline
from ingest_platform.index import CANDIDATE, PRODUCTION
from ingest_platform.reporting import md_table
from resources import EmbedderResource, IndexStoreResource, PlatformSettings

from .evaluation import index_eval
from .ingest import enriched_chunks

GROUP = "index"


@dg.asset(group_name=GROUP, deps=[enriched_chunks], kinds={"python", "pytorch"})
def embeddings(context: dg.AssetExecutionContext, platform: PlatformSettings, embedder: EmbedderResource) -> dg.MaterializeResult:
    """Vectors for every enriched chunk, cached by (model id, text hash): text embedded once is
    never embedded again."""
    stats = pipeline.embed(platform.get(), embedder.embedder)
    return dg.MaterializeResult(metadata={
        "model": stats.model_id, "chunks": stats.chunks, "unique_texts": stats.unique_texts,
        "embedded": stats.embedded, "cache_hits": stats.cache_hits,
        "cache_hit_rate": round(stats.hit_rate, 4), "seconds": round(stats.seconds, 3),
        "chunks_per_s": round(stats.chunks_per_s, 1),
    })


@dg.asset(group_name=GROUP, deps=[embeddings], kinds={"lancedb"})
def candidate_index(context: dg.AssetExecutionContext, platform: PlatformSettings,
                    embedder: EmbedderResource, index_store: IndexStoreResource) -> dg.MaterializeResult:
    """The LanceDB chunks table synced to the enriched chunks (only changed documents touched, one
    commit), optimized so the BM25 and scalar indexes cover every row, tagged ``candidate``."""
    result = pipeline.build_index(platform.get(), embedder.embedder)
    if not result.wrote:
        context.log.info(f"index unchanged at version {result.version}: no new version written")
    return dg.MaterializeResult(metadata={
        "version": result.version, "rows": result.rows, "new_version_written": result.wrote,
        "documents_upserted": result.upserted_docs, "documents_deleted": result.deleted_docs,
        "rows_inserted": result.inserted, "rows_updated": result.updated, "rows_deleted": result.deleted,
        "rebuilt": result.rebuilt, "seconds": round(result.seconds, 3),
        "tags": dg.MetadataValue.md(md_table([{"tag": k, "version": v} for k, v in sorted(index_store.store.tags().items())])),
    })


@dg.asset(group_name=GROUP, deps=[candidate_index, index_eval], kinds={"lancedb"})
def production_index(context: dg.AssetExecutionContext, platform: PlatformSettings,
                     index_store: IndexStoreResource) -> dg.MaterializeResult:
    """Moves the ``production`` tag to the candidate version. Runs only after the candidate's
    blocking checks passed in this run, and re-verifies their recorded verdicts for that exact
    version, so materializing it on its own cannot promote an unchecked index."""
    store = index_store.store
    tags = store.tags()
    candidate = tags[CANDIDATE]
    if tags.get(PRODUCTION) == candidate:
        return dg.MaterializeResult(metadata={"version": candidate, "promoted": False,
                                              "reason": "candidate is already production"})
    try:
        passed = gates.require_passed(platform.get().state, candidate)
    except gates.GateError as exc:
        raise dg.Failure(description=str(exc)) from exc
    event = store.promote(candidate, why=f"pipeline run {context.run_id}", who="dagster")
    return dg.MaterializeResult(metadata={
        "version": event.to_version, "previous_version": event.from_version, "promoted": True,
        "gates": dg.MetadataValue.md(md_table([{"check": k, "passed": v["passed"]} for k, v in sorted(passed.items())])),
    })
