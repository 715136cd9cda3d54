"""ingest-platform core library: sources, parsing, chunking, enrichment, embedding, index, query, eval.

Serving apps import ``search`` or ``Retriever`` from here; nothing in this package imports Dagster.
"""

from __future__ import annotations

__all__ = ["search", "Retriever", "SearchResult", "Hit", "load_settings", "Settings", "Context", "Rewrite",
           "GlossaryRewriter", "Feedback", "FeedbackError"]

# Serving-side names (issue 16), each from its own module, imported on first use.
_LAZY = {"Context": "context", "Rewrite": "rewrite", "GlossaryRewriter": "rewrite", "Feedback": "feedback",
         "FeedbackError": "feedback"}


def __getattr__(name: str):
    # Lazy: importing the package must stay cheap for serving apps (no torch until a query needs it).
    if name in {"search", "Retriever", "SearchResult", "Hit"}:
        from ingest_platform import query

        return getattr(query, name)
    if name in {"load_settings", "Settings"}:
        from ingest_platform import config

        return getattr(config, name)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ingest_platform.{_LAZY[name]}"), name)
    raise AttributeError(name)
