"""Warnings an operator must see: sources that could not be listed, and deletions held for
confirmation. Neither blocks a run: other sources still index, and the affected documents keep
their last good state until the outage ends or the deletion is confirmed."""

from __future__ import annotations

import dagster as dg

from assets.ingest import document_manifest
from ingest_platform import pipeline, promotion
from assets import metadata as m
from resources import PlatformSettings


@dg.asset_check(asset=document_manifest, blocking=False,
                description="Warns when a configured source could not be listed in the last scan "
                            "(missing, empty or unreadable folder, bucket without its driver). Its "
                            "documents are kept as they were: an outage is never read as deletions.")
def sources_available(platform: PlatformSettings) -> dg.AssetCheckResult:
    down = pipeline.unavailable_sources(platform.get())
    return dg.AssetCheckResult(
        passed=not down, severity=dg.AssetCheckSeverity.WARN,
        description=("every source listed" if not down else
                     f"{len(down)} source(s) unavailable, documents kept: {', '.join(sorted(down))}"),
        metadata={"sources_unavailable": len(down),
                  "unavailable": m.table([{"source": k, "why": v} for k, v in sorted(down.items())],
                                         [("source", "string", "configured source"), ("why", "string", "the listing error")])},
    )


@dg.asset_check(asset=document_manifest, blocking=False,
                description="Warns when more than [safety] max_deletion_ratio of a source's documents "
                            "vanished in one scan: the deletion is held (production keeps them) until "
                            "`ingest-platform promote --confirm-deletions`.")
def deletions_held(platform: PlatformSettings) -> dg.AssetCheckResult:
    hold = promotion.hold_report(platform.get())
    docs = hold["documents"] if hold else []
    return dg.AssetCheckResult(
        passed=not docs, severity=dg.AssetCheckSeverity.WARN,
        description=("no deletion held" if not docs else
                     f"{len(docs)} deletions held for confirmation: run `ingest-platform promote --confirm-deletions`"),
        metadata={"documents_held": len(docs),
                  "held": m.table(docs, [("doc_id", "string", "document whose deletion is held"),
                                         ("source", "string", ""), ("source_uri", "string", "where it was")], limit=50)},
    )


SAFETY_CHECKS = [sources_available, deletions_held]
