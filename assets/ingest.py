"""Ingest stages: sources -> manifest -> parsed documents -> chunks -> enriched chunks."""


import dagster as dg

from ingest_platform import pipeline
from ingest_platform.reporting import md_table
from resources import PlatformSettings

GROUP = "ingest"


def _failures_md(failures: list[dict]) -> dg.MetadataValue:
    return dg.MetadataValue.md(md_table(failures, ["doc_id", "reason", "source_uri"]))


@dg.asset(group_name=GROUP, kinds={"python", "parquet"})
def document_manifest(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """Every document of every configured source with its content hash and status
    (new / changed / unchanged / deleted / failed). Unchanged files are not re-read."""
    s = platform.get()
    summary = pipeline.scan(s)
    for err in summary.errors:
        context.log.error(err)
    context.log.info(f"scan: {summary.counts}")
    return dg.MaterializeResult(metadata={
        "documents": sum(v for k, v in summary.counts.items() if k != "deleted"),
        **{f"status/{k}": v for k, v in summary.counts.items()},
        "hashed_files": summary.hashed,
        "sources": ", ".join(summary.scanned_sources),
        "source_errors": dg.MetadataValue.md(md_table([{"error": e} for e in summary.errors])),
        "seconds": round(summary.seconds, 3),
    })


@dg.asset(group_name=GROUP, deps=[document_manifest], kinds={"python", "parquet"})
def parsed_documents(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """Elements from unstructured, cached by content hash: a document is parsed once per content.
    Failures (corrupt, encrypted, empty, too big, timed out) are recorded per document."""
    summary = pipeline.parse(platform.get())
    context.log.info(f"parsed {summary.parsed}, cached {summary.cached}, failed {summary.failed}")
    return dg.MaterializeResult(metadata={
        "parsed": summary.parsed, "cached": summary.cached, "failed": summary.failed,
        "elements": summary.elements, "seconds": round(summary.seconds, 3),
        "docs_per_s": round(summary.parsed / summary.seconds, 2) if summary.seconds else 0.0,
        "failures": _failures_md(summary.failures),
    })


@dg.asset(group_name=GROUP, deps=[parsed_documents], kinds={"python", "parquet"})
def chunks(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """Structure-aware chunks (sections under their headings, lists together, tables whole or split
    by rows with the header repeated), bounded in the embedding model's tokens."""
    s = platform.get()
    summary = pipeline.chunk(s)
    table = pipeline.read_parquet(pipeline.chunks_path(s), pipeline.CHUNKS)
    tokens = table["token_count"].to_numpy() if table.num_rows else []
    return dg.MaterializeResult(metadata={
        "rows": summary.rows, "documents_chunked": summary.documents, "documents_kept": summary.kept,
        "documents_dropped": summary.dropped, "seconds": round(summary.seconds, 3),
        "tokens_max": int(max(tokens)) if len(tokens) else 0,
        "tokens_mean": round(float(sum(tokens) / len(tokens)), 1) if len(tokens) else 0.0,
        "preview": dg.MetadataValue.md(md_table(
            table.slice(0, 5).select(["doc_id", "heading_path", "page_start", "token_count", "text"]).to_pylist())),
    })


@dg.asset(group_name=GROUP, deps=[chunks], kinds={"python", "parquet"})
def enriched_chunks(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """Chunks with their document's metadata: source, title, heading path, pages, format, language,
    dates, token count, access groups and sensitive-data flags (redacted when configured)."""
    s = platform.get()
    summary = pipeline.enrich(s)
    table = pipeline.load_enriched(s)
    flagged = [r for r in table.select(["chunk_id", "doc_id", "sensitive_counts_json"]).to_pylist()
               if r["sensitive_counts_json"] not in (None, "{}")]
    groups: dict[str, int] = {}
    for gs in table["access_groups"].to_pylist():
        for g in gs or ["(none)"]:
            groups[g] = groups.get(g, 0) + 1
    return dg.MaterializeResult(metadata={
        "rows": summary.rows, "documents_enriched": summary.documents, "seconds": round(summary.seconds, 3),
        "chunks_with_sensitive_data": len(flagged), "redaction": s.redact_sensitive,
        "chunks_by_access_group": dg.MetadataValue.md(md_table([{"group": g, "chunks": n} for g, n in sorted(groups.items())])),
        "sensitive_preview": dg.MetadataValue.md(md_table(flagged[:10])),
        "preview": dg.MetadataValue.md(md_table(
            table.slice(0, 5).select(["doc_id", "title", "heading_path", "language", "access_groups", "text"]).to_pylist())),
    })
