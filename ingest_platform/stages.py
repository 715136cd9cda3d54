"""The pipeline's stages, in order: the one list ``pipeline.run_all``, the benchmarks and the
Dagster asset graph follow (``tests/test_dagster.py`` checks that the assets keep this order).

Each stage is a function of the settings (and the loaded embedder, for the two that need it) that
reconciles its own output with the state its predecessors left, so every stage can be re-run on
its own, and a run killed anywhere is finished by the next. Promotion is not a stage: it is the
one door to production (``ingest_platform.promotion``), after the gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest_platform.config import Settings
from ingest_platform.heap import release_free_heap


@dataclass(frozen=True)
class Stage:
    name: str  # the key of its summary in ``run_all``'s result
    asset: str  # the Dagster asset that runs it
    body: Callable[[Settings, Any], Any]  # (settings, embedder or None) -> its summary
    what: str

    def run(self, settings: Settings, embedder: Any = None) -> Any:
        """The stage, then the memory it freed goes back to the OS, so the next stage does not
        start on top of this one's peak (``ingest_platform.heap``)."""
        try:
            return self.body(settings, embedder)
        finally:
            release_free_heap()


def _scan(s, _e):
    from ingest_platform import pipeline

    return pipeline.scan(s)


def _revoke(s, _e):
    from ingest_platform import promotion

    return promotion.apply_revocations(s, why="run_all fast path")


def _parse(s, _e):
    from ingest_platform import pipeline

    return pipeline.parse(s, pool=lambda: pipeline.process_pool(s))


def _chunk(s, _e):
    from ingest_platform import pipeline

    return pipeline.chunk(s)


def _enrich(s, _e):
    from ingest_platform import pipeline

    return pipeline.enrich(s)


def _embed(s, e):
    from ingest_platform import pipeline

    return pipeline.embed(s, e)


def _index(s, e):
    from ingest_platform import pipeline

    return pipeline.build_index(s, e)


STAGES: tuple[Stage, ...] = (
    Stage("scan", "document_manifest", _scan, "list every source, hash what changed: the manifest"),
    Stage("revoke", "production_revocations", _revoke, "deletions and revoked groups leave production now"),
    Stage("parse", "parsed_documents", _parse, "unstructured, per shard, cached by content hash and parser version"),
    Stage("chunk", "chunks", _chunk, "PDF lines joined, structure-aware chunks, per shard"),
    Stage("enrich", "enriched_chunks", _enrich, "metadata and flags per shard, then the corpus-wide guardrails"),
    Stage("embed", "embeddings", _embed, "vectors the cache lacks, one shard in memory at a time"),
    Stage("index", "candidate_index", _index, "one LanceDB commit, indexed, tagged candidate"),
)
NAMES = tuple(s.name for s in STAGES)

__all__ = ["Stage", "STAGES", "NAMES"]
