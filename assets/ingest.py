"""Ingest stages: sources -> manifest -> parsed documents -> chunks -> enriched chunks."""


import dagster as dg

from ingest_platform import changes, completion, pipeline, promotion
from ingest_platform.reporting import md_table
from resources import PlatformSettings

from . import metadata as meta

GROUP = "ingest"


RUN_TAG_CHANGES = "ingest_platform/changes"
RUN_TAG_OUTCOME = "ingest_platform/outcome"


@dg.asset(group_name=GROUP, kinds={"python", "parquet"}, output_required=False)
def document_manifest(context: dg.AssetExecutionContext, platform: PlatformSettings):
    """Every document of every configured source with its content hash and status
    (new / changed / unchanged / deleted / failed). Unchanged files are not re-read.

    The ``changes`` table names the documents this run found new, changed, deleted or failed, and
    the first few go into the run's tags. When nothing changed since the last complete run, the
    asset is not materialized (an observation says so) and every later step is skipped: a no-op
    run adds nothing to any asset's history."""
    s = platform.get()
    summary = pipeline.scan(s)
    for err in summary.errors:
        context.log.warning(f"{err}: its documents keep their last good state")
    for c in summary.changes:
        if c.status == "failed":
            context.log.warning(f"failed: {c.document}: {c.reason}")
    # "failed" here is what is known before parsing (listing errors, content that failed to parse
    # before); parsed_documents and the documents_failed check report the total after parsing.
    counts = {f"documents_{k}" if k != "failed" else "documents_failed_before_parsing": v
              for k, v in summary.counts.items()}
    base = {
        "documents": sum(v for k, v in summary.counts.items() if k != "deleted"), **counts,
        "documents_hashed": summary.hashed, "seconds": round(summary.seconds, 3),
        "sources": meta.text(", ".join(summary.scanned_sources) or "none"),
        "sources_unavailable": len(summary.unavailable),
    }
    last = None if summary.errors or summary.changes else completion.unchanged_since(s)
    if last is not None:
        msg = f"no-op: nothing changed since run {last.run_id} ({last.at}); every later step is skipped"
        context.log.info(msg)
        # Retention still runs: versions holding revoked text must go when their window ends.
        promotion.purge_revoked(s)
        context.instance.add_run_tags(context.run_id, {RUN_TAG_OUTCOME: "no-op: nothing changed"})
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata={
            **base, "outcome": meta.text(msg), "last_complete_run": meta.text(last.run_id)}))
        return
    tag = changes.run_tag(summary.changes) if summary.changes else "none"
    context.instance.add_run_tags(context.run_id, {RUN_TAG_CHANGES: tag})
    context.log.info(f"scan: {summary.counts}; changes: {tag}")
    yield dg.MaterializeResult(metadata={
        **base,
        "changes": meta.changes_table(summary.changes),
        "changes_shown": meta.text(f"{min(len(summary.changes), 100)} of {len(summary.changes)}"),
        "source_errors": meta.table([{"error": e} for e in summary.errors],
                                    [("error", "string", "a source that could not be listed")]),
    })


@dg.asset(group_name=GROUP, deps=[document_manifest], kinds={"python", "parquet"})
def parsed_documents(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """Elements from unstructured, cached by content hash: a document is parsed once per content.
    Failures (corrupt, encrypted, empty, too big, timed out) are recorded per document, logged at
    WARNING, and listed with their reason; the ``documents_failed`` check turns the asset yellow."""
    summary = pipeline.parse(platform.get())
    for f in summary.new_failures:
        context.log.warning(f"failed: {f['doc_id']}: {f['reason']}")
    context.log.info(f"parsed {summary.parsed}, cached {summary.cached}, "
                     f"failed {summary.failed} ({len(summary.new_failures)} in this run)")
    return dg.MaterializeResult(metadata={
        "documents_parsed": summary.parsed, "documents_cached": summary.cached,
        "documents_failed": summary.failed, "documents_failed_this_run": len(summary.new_failures),
        "elements": summary.elements, "seconds": round(summary.seconds, 3),
        "docs_per_second": meta.per_second(summary.parsed, summary.seconds),
        "failures": meta.failures_table(summary.failures),
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
        "chunks": summary.rows, "documents_chunked": summary.documents, "documents_kept": summary.kept,
        "documents_dropped": summary.dropped, "seconds": round(summary.seconds, 3),
        "chunks_per_second": meta.per_second(summary.rows if summary.documents else 0, summary.seconds),
        "tokens_max": int(max(tokens)) if len(tokens) else 0,
        "tokens_mean": round(float(sum(tokens) / len(tokens)), 1) if len(tokens) else 0.0,
        "preview": meta.table(_preview_rows(s, table, ["doc_id", "heading_path", "page_start", "token_count", "text"]),
                              [("doc_id", "string", "document"), ("heading_path", "string", "section"),
                               ("page_start", "int", "first page"), ("token_count", "int", "model tokens"),
                               ("text", "string", "chunk text")]),
    })


def _preview_rows(s, table, columns: list[str], limit: int = 5) -> list[dict]:
    """A few rows of the documents this run changed (new or changed first), else the first rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ingest_platform import manifest as mf

    m = mf.load_manifest(s.state)
    touched = [d for d, st in zip(m["doc_id"].to_pylist(), m["status"].to_pylist()) if st in ("new", "changed")]
    picked = table.filter(pc.is_in(table["doc_id"], pa.array(touched, pa.string()))) if touched else table
    if picked.num_rows == 0:
        picked = table
    return picked.slice(0, limit).select(columns).to_pylist()


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
        **_guardrail_metadata(s, table),
        "chunks": summary.rows, "documents_enriched": summary.documents, "seconds": round(summary.seconds, 3),
        "chunks_with_sensitive_data": len(flagged), "redaction": meta.text("on" if s.redact_sensitive else "off"),
        "chunks_by_access_group": meta.table([{"group": g, "chunks": n} for g, n in sorted(groups.items())],
                                             [("group", "string", "access group"), ("chunks", "int", "chunks it may read")]),
        "sensitive_preview": meta.table(flagged[:10], [("chunk_id", "string", ""), ("doc_id", "string", "document"),
                                                       ("sensitive_counts_json", "string", "kind -> matches")]),
        "preview": meta.table(_preview_rows(s, table, ["doc_id", "title", "heading_path", "language", "access_groups", "text"]),
                              [("doc_id", "string", "document"), ("title", "string", ""), ("heading_path", "string", "section"),
                               ("language", "string", ""), ("access_groups", "string", "who may read it"),
                               ("text", "string", "chunk text")]),
    })


def _guardrail_metadata(s, indexed) -> dict:
    """Guardrail counts per risk type, the flagged documents, quarantine, boilerplate, near-duplicate
    groups and superseded documents (``ingest_platform.risk_report``)."""
    from ingest_platform import risk_report

    r = risk_report.summarize(s, indexed=indexed)
    return {
        "risk/flagged_chunks": r["flagged_chunks"], "risk/quarantined_chunks": r["quarantined_chunks"],
        "risk/flagged_documents": r["flagged_document_count"],
        **{f"risk/{kind}": n for kind, n in r["chunks_by_risk"].items()},
        "flagged_documents": dg.MetadataValue.md(md_table(r["flagged_documents"][:50])),
        "boilerplate_lines": r["boilerplate_lines"], "boilerplate_removed": r["boilerplate_removed"],
        "boilerplate": dg.MetadataValue.md(md_table(r["boilerplate_examples"])),
        "near_duplicate_groups": dg.MetadataValue.md(md_table(
            [{"documents": ", ".join(g), "representative": g[0]} for g in r["near_duplicate_groups"][:50]])),
        "superseded_documents": dg.MetadataValue.md(md_table(r["superseded"][:50])),
    }
