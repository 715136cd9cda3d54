"""Checks on the candidate index itself: it holds every enriched chunk, and its indexes cover it."""


import dagster as dg

from assets.index import candidate_index
from ingest_platform import pipeline
from ingest_platform.index import CANDIDATE
from resources import IndexStoreResource, PlatformSettings

from .gating import gate_result


@dg.asset_check(asset=candidate_index, blocking=True,
                description="Row count equals the enriched chunk count, no row is left out of the "
                            "BM25/scalar indexes after optimize, and the model id is recorded.")
def index_is_complete(platform: PlatformSettings, index_store: IndexStoreResource) -> dg.AssetCheckResult:
    s = platform.get()
    store = index_store.store
    version = store.version_of(CANDIDATE)
    table = store.checkout(version)
    rows = table.count_rows()
    expected = pipeline.load_enriched(s).num_rows
    unindexed = {name: n for name, n in store.unindexed_rows(version).items() if n}
    model_id = store.model(table)[0]
    passed = rows == expected and not unindexed and bool(model_id)
    return gate_result(s.state, version, "index_is_complete", passed, {
        "rows": rows, "enriched_chunks": expected, "unindexed_rows": sum(unindexed.values()),
        "indexes_behind": ", ".join(sorted(unindexed)) or "none", "embedding_model": model_id,
    })
