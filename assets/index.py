"""Index stages: embeddings (cached) -> candidate index version -> promotion to production."""


import dagster as dg

from ingest_platform import changes, gates, pipeline, promotion
from ingest_platform.errors import PromotionRefused
from ingest_platform.index import CANDIDATE, PRODUCTION
from resources import EmbedderResource, IndexStoreResource, PlatformSettings

from . import metadata as meta
from .evaluation import index_eval
from .ingest import document_manifest, enriched_chunks

GROUP = "index"


@dg.asset(group_name=GROUP, deps=[enriched_chunks], kinds={"python", "pytorch"})
def embeddings(context: dg.AssetExecutionContext, platform: PlatformSettings, embedder: EmbedderResource) -> dg.MaterializeResult:
    """Vectors for every enriched chunk, cached by (model id, text hash): text embedded once is
    never embedded again."""
    stats = pipeline.embed(platform.get(), embedder.embedder)
    return dg.MaterializeResult(metadata={
        "model": meta.text(stats.model_id), "chunks": stats.chunks, "unique_texts": stats.unique_texts,
        "chunks_embedded": stats.embedded, "cache_hits": stats.cache_hits,
        "cache_hit_percent": round(100 * stats.hit_rate, 2), "seconds": round(stats.seconds, 3),
        "chunks_per_second": round(stats.chunks_per_s, 1),
    })


@dg.asset(group_name=GROUP, deps=[document_manifest], kinds={"lancedb"})
def production_revocations(context: dg.AssetExecutionContext, platform: PlatformSettings,
                           index_store: IndexStoreResource) -> dg.MaterializeResult:
    """The security fast path: documents deleted from their source and access groups revoked by a
    sidecar or rule leave the production version in this run, whatever the quality gates decide
    later (removing rows or narrowing groups cannot make the index worse for anyone still entitled
    to them). Also purges old versions that hold revoked text once their retention has passed."""
    s = platform.get()
    result = promotion.apply_revocations(s, why=f"pipeline run {context.run_id}", who="dagster",
                                         store=index_store.store)
    purged = promotion.purge_revoked(s, store=index_store.store)
    hold = promotion.hold_report(s)
    out: dict = {
        "applied": result is not None,
        "documents_deleted_from_production": len(result.deleted) if result else 0,
        "documents_narrowed_in_production": len(result.narrowed) if result else 0,
        "versions_pruned": purged["versions_pruned"],
        "deletions_held": len(hold["documents"]) if hold else 0,
    }
    if result:
        context.log.warning(f"production v{result.from_version} -> v{result.to_version}: removed "
                            f"{result.deleted[:20]}, narrowed {sorted(result.narrowed)[:20]}")
        out["production_version"] = result.to_version
        out["changed_documents"] = _revoked_table(result.deleted, result.narrowed)
    if hold:
        context.log.warning(f"deletion of {len(hold['documents'])} documents held until "
                            "`ingest-platform promote --confirm-deletions`")
    return dg.MaterializeResult(metadata=out)


def _revoked_table(deleted: list[str], narrowed: dict[str, list[str]]) -> dg.TableMetadataValue:
    return meta.table(
        [{"document": d, "change": "deleted"} for d in deleted]
        + [{"document": d, "change": f"groups narrowed to {g or 'none'}"} for d, g in sorted(narrowed.items())],
        [("document", "string", "a document production no longer serves (to some or all)"),
         ("change", "string", "deleted from its source, or the groups it keeps")])


@dg.asset(group_name=GROUP, deps=[embeddings, production_revocations], kinds={"lancedb"})
def candidate_index(context: dg.AssetExecutionContext, platform: PlatformSettings,
                    embedder: EmbedderResource, index_store: IndexStoreResource) -> dg.MaterializeResult:
    """The LanceDB chunks table synced to the enriched chunks (only changed documents touched, one
    commit), its rows indexed so the BM25 and scalar indexes cover every row (``index.settle``),
    tagged ``candidate``."""
    s = platform.get()
    before = changes.index_texts(index_store.store)
    result = pipeline.build_index(s, embedder.embedder)
    if not result.wrote:
        context.log.info(f"index unchanged at version {result.version}: no new version written")
    diff = changes.chunk_changes(before, changes.index_texts(index_store.store)) if result.wrote else []
    # Taken out of production by the checks while this run parsed and embedded (after its scan):
    # this candidate still holds them, and is promoted with them applied.
    revoked = promotion.revoked_since_scan(s)
    during = {"documents_revoked_during_run": len(revoked["deleted"]) + len(revoked["narrowed"])}
    if during["documents_revoked_during_run"]:
        during["revoked_during_run"] = _revoked_table(revoked["deleted"], revoked["narrowed"])
    return dg.MaterializeResult(metadata={**during,
        "version": meta.text(result.version), "rows": result.rows, "new_version_written": result.wrote,
        "changes": meta.table([c.to_dict() for c in diff], meta.CHANGE_COLUMNS[:2] + meta.CHUNK_COLUMNS),
        "documents_upserted": result.upserted_docs, "documents_deleted": result.deleted_docs,
        "rows_inserted": result.inserted, "rows_updated": result.updated, "rows_deleted": result.deleted,
        "rebuilt": result.rebuilt, "seconds": round(result.seconds, 3),
        "tags": meta.table([{"tag": k, "version": v} for k, v in sorted(index_store.store.tags().items())],
                           [("tag", "string", "a name readers use"), ("version", "int", "LanceDB table version")]),
    })


@dg.asset(group_name=GROUP, deps=[candidate_index, index_eval], kinds={"lancedb"})
def production_index(context: dg.AssetExecutionContext, platform: PlatformSettings,
                     index_store: IndexStoreResource) -> dg.MaterializeResult:
    """Moves the ``production`` tag to the candidate version through the one promotion door
    (``ingest_platform.promotion.promote``), which re-verifies every gate the settings require for
    that exact version, so materializing this on its own cannot promote an unchecked index."""
    s = platform.get()
    store = index_store.store
    promotion.apply_requested_rollback(s, store)  # an operator's, handed to this run
    tags = store.tags()
    candidate = tags[CANDIDATE]
    if tags.get(PRODUCTION) == candidate:
        return dg.MaterializeResult(metadata={"version": candidate, "promoted": False,
                                              "reason": "candidate is already production"})
    if (held := promotion.rolled_back(store)) is not None:
        # The state an operator chose, not a failure: failing every scheduled run would page people
        # and hide real failures. Revocations still reach production (the security fast path).
        reason = promotion.held_by(held)
        context.log.warning(reason)
        return dg.MaterializeResult(metadata={"version": tags.get(PRODUCTION), "candidate_version": candidate,
                                              "promoted": False, "held_by_rollback": True, "reason": reason})
    try:
        event = promotion.promote(s, candidate, why=f"pipeline run {context.run_id}", who="dagster",
                                  by_run=True, store=store)
    except PromotionRefused as exc:
        raise dg.Failure(description=str(exc)) from exc
    passed = gates.results(s.state, candidate)
    return dg.MaterializeResult(metadata={
        "version": event.to_version, "previous_version": event.from_version, "promoted": True,
        "gates": meta.table([{"check": k, "passed": v["passed"]} for k, v in sorted(passed.items())],
                         [("check", "string", "a gate the version needed"), ("passed", "bool", "its recorded verdict")]),
    })
