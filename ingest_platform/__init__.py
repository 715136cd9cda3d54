"""ingest-platform core library: sources, parsing, chunking, enrichment, embedding, index, query, eval.

Serving apps import ``search`` or ``Retriever`` from here; nothing in this package imports Dagster.
"""

from __future__ import annotations

__all__ = ["search", "Retriever", "SearchResult", "Hit", "load_settings", "Settings"]


def __getattr__(name: str):
    # Lazy: importing the package must stay cheap for serving apps (no torch until a query needs it).
    if name in {"search", "Retriever", "SearchResult", "Hit"}:
        from ingest_platform import query

        return getattr(query, name)
    if name in {"load_settings", "Settings"}:
        from ingest_platform import config

        return getattr(config, name)
    raise AttributeError(name)
