"""Ingest stages: sources -> manifest -> parsed documents -> chunks -> enriched chunks."""


from dataclasses import asdict

import dagster as dg

from ingest_platform import changes, chunking, completion, pipeline, promotion
from resources import ParserPoolResource, PlatformSettings

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


# ---- shard fan-out ------------------------------------------------------------------------------
# Parsing, chunking and enrichment run per shard (``ingest_platform.shards``): each of those assets
# is a graph whose plan op yields one dynamic output per shard with work to do (state compared, not
# statuses trusted, so a killed run is finished by the next), a mapped op does one shard, and a
# report op collects them. The asset graph stays one readable chain; in the run view each shard is
# a step of its own (``parse_shard[shard_007]``), so a failing shard is visible and the others'
# work is kept. With the multiprocess or Celery executor the shard steps run in parallel.


def _shard_outputs(shards: list[str]):
    for shard in shards:
        yield dg.DynamicOutput(shard, mapping_key=f"shard_{shard}")


@dg.op(ins={"start": dg.In(dg.Nothing)}, out=dg.DynamicOut(str))
def parse_plan(context: dg.OpExecutionContext, platform: PlatformSettings):
    """The shards holding live documents whose content is in neither parse cache."""
    shards = pipeline.pending_shards(platform.get(), "parse")
    context.log.info(f"{len(shards)} shards to parse: {', '.join(shards[:20])}")
    yield from _shard_outputs(shards)


@dg.op
def parse_shard(context: dg.OpExecutionContext, platform: PlatformSettings, parser_pool: ParserPoolResource,
                shard: str) -> dict:
    """Parse one shard's documents into the content-keyed caches."""
    result = pipeline.parse_shards(platform.get(), [shard], pool=parser_pool.get)
    context.log.info(f"shard {shard}: parsed {result.parsed}, cached {result.cached}")
    return asdict(result)


@dg.op(out=dg.Out(dg.Nothing))
def parse_report(context: dg.OpExecutionContext, platform: PlatformSettings, parser_pool: ParserPoolResource,
                 results: list[dict]) -> None:
    """The fan-in: the parser workers stop (every shard is parsed; they hold about 0.8 GB each and
    would otherwise live through embedding), failures go into the manifest (one write), and the
    asset's dashboard."""
    parser_pool.close()
    summary = pipeline.finish_parse(platform.get(), [pipeline.ShardParse(**r) for r in results])
    for f in summary.new_failures:
        context.log.warning(f"failed: {f['doc_id']}: {f['reason']}")
    for f in summary.stale:
        context.log.warning(f"stale: {f['doc_id']}: {f['reason']}")
    context.log.info(f"parsed {summary.parsed}, cached {summary.cached}, "
                     f"failed {summary.failed} ({len(summary.new_failures)} in this run)")
    context.add_output_metadata({
        "documents_parsed": summary.parsed, "documents_cached": summary.cached,
        "documents_failed": summary.failed, "documents_failed_this_run": len(summary.new_failures),
        "elements": summary.elements, "shards_parsed": len(results), "seconds": round(summary.seconds, 3),
        "docs_per_second": meta.per_second(summary.parsed, summary.seconds),
        "failures": meta.failures_table(summary.failures),
        "documents_stale": len(summary.stale), "stale": meta.failures_table(summary.stale),
    })


@dg.graph_asset(group_name=GROUP, kinds={"python", "parquet"},
                ins={"document_manifest": dg.AssetIn(dagster_type=dg.Nothing)})
def parsed_documents(document_manifest):
    """Elements from unstructured, cached by content hash and parser version: a document is parsed
    once per content and parser, one shard per step. Failures (corrupt, encrypted, empty, too big, timed out) are recorded per
    document, logged at WARNING, and listed with their reason; the ``documents_failed`` check
    turns the asset yellow."""
    return parse_report(parse_plan(start=document_manifest).map(parse_shard).collect())


@dg.op(ins={"start": dg.In(dg.Nothing)}, out=dg.DynamicOut(str))
def chunk_plan(context: dg.OpExecutionContext, platform: PlatformSettings):
    """The shards whose chunks are not of their live documents' current versions."""
    yield from _shard_outputs(pipeline.pending_shards(platform.get(), "chunk"))


@dg.op
def chunk_shard(context: dg.OpExecutionContext, platform: PlatformSettings, shard: str) -> dict:
    return {"shard": shard, **asdict(pipeline.chunk_shard(platform.get(), shard))}


@dg.op(out=dg.Out(dg.Nothing))
def chunk_report(context: dg.OpExecutionContext, platform: PlatformSettings, results: list[dict]) -> None:
    s = platform.get()
    sharded = pipeline.chunk_table(s)
    sizes = sharded.read_all(["doc_id", "token_count"])
    tokens = sizes["token_count"].to_numpy()
    fragments, small_documents = chunking.undersized(sizes, s.chunking.min_tokens)
    documents = sum(r["documents"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    context.add_output_metadata({
        "chunks": len(tokens), "documents_chunked": documents,
        "documents_dropped": sum(r["dropped"] for r in results), "shards_chunked": len(results),
        "seconds": round(seconds, 3),
        "chunks_per_second": meta.per_second(sum(r["rows"] for r in results) if documents else 0, seconds),
        "tokens_max": int(max(tokens)) if len(tokens) else 0,
        "tokens_mean": round(float(sum(tokens) / len(tokens)), 1) if len(tokens) else 0.0,
        # Fragments: chunks under the minimum in documents that are larger (0 unless the chunker
        # is wrong); documents smaller than the minimum are one chunk each, counted apart.
        "chunks_under_min_tokens": fragments, "documents_under_min_tokens": small_documents,
        "preview": meta.table(_preview_rows(s, _touched(sharded, results),
                                            ["doc_id", "heading_path", "page_start", "token_count", "text"]),
                              [("doc_id", "string", "document"), ("heading_path", "string", "section"),
                               ("page_start", "int", "first page"), ("token_count", "int", "model tokens"),
                               ("text", "string", "chunk text")]),
    })


def _touched(sharded, results: list[dict], limit: int = 2):
    """A preview's rows come from the shards this run rewrote (the first written shard otherwise):
    never the whole corpus in memory for five rows."""
    shards = [r["shard"] for r in results if r.get("documents")][:limit] or sharded.written()[:1]
    return pipeline.pa.concat_tables([sharded.read(sh) for sh in shards]) if shards else sharded.schema.empty_table()


@dg.graph_asset(group_name=GROUP, kinds={"python", "parquet"},
                ins={"parsed_documents": dg.AssetIn(dagster_type=dg.Nothing)})
def chunks(parsed_documents):
    """Structure-aware chunks (sections under their headings, lists together, tables whole or split
    by rows with the header repeated; PDF lines joined back into paragraphs first), bounded in the
    embedding model's tokens, never under ``[chunking] min_tokens`` unless the whole document is.
    One shard per step."""
    return chunk_report(chunk_plan(start=parsed_documents).map(chunk_shard).collect())


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


@dg.op(ins={"start": dg.In(dg.Nothing)}, out=dg.DynamicOut(str))
def enrich_plan(context: dg.OpExecutionContext, platform: PlatformSettings):
    """The shards whose enriched chunks are not of their current chunks."""
    yield from _shard_outputs(pipeline.pending_shards(platform.get(), "enrich"))


@dg.op
def enrich_shard(context: dg.OpExecutionContext, platform: PlatformSettings, shard: str) -> dict:
    return {"shard": shard, **asdict(pipeline.enrich_shard(platform.get(), shard))}


@dg.op(out=dg.Out(dg.Nothing))
def enrich_report(context: dg.OpExecutionContext, platform: PlatformSettings, results: list[dict]) -> None:
    """The fan-in: the corpus-wide guardrails (boilerplate, near-duplicates, superseded versions)
    over every shard, then the asset's dashboard."""
    s = platform.get()
    pipeline.finalize_corpus(s)
    table = pipeline.load_enriched(s, ["chunk_id", "doc_id", "access_groups", "sensitive_counts_json", "superseded_by"])
    flagged = [r for r in table.select(["chunk_id", "doc_id", "sensitive_counts_json"]).to_pylist()
               if r["sensitive_counts_json"] not in (None, "{}")]
    groups: dict[str, int] = {}
    for gs in table["access_groups"].to_pylist():
        for g in gs or ["(none)"]:
            groups[g] = groups.get(g, 0) + 1
    context.add_output_metadata({
        **_guardrail_metadata(s, table),
        "chunks": table.num_rows, "documents_enriched": sum(r["documents"] for r in results),
        "shards_enriched": len(results), "seconds": round(sum(r["seconds"] for r in results), 3),
        "chunks_with_sensitive_data": len(flagged), "redaction": meta.text("on" if s.redact_sensitive else "off"),
        "chunks_by_access_group": meta.table([{"group": g, "chunks": n} for g, n in sorted(groups.items())],
                                             [("group", "string", "access group"), ("chunks", "int", "chunks it may read")]),
        "sensitive_preview": meta.table(flagged[:10], [("chunk_id", "string", ""), ("doc_id", "string", "document"),
                                                       ("sensitive_counts_json", "string", "kind -> matches")]),
        "preview": meta.table(_preview_rows(s, _touched(pipeline.indexable_table(s), results),
                                            ["doc_id", "title", "heading_path", "language", "access_groups", "text"]),
                              [("doc_id", "string", "document"), ("title", "string", ""), ("heading_path", "string", "section"),
                               ("language", "string", ""), ("access_groups", "string", "who may read it"),
                               ("text", "string", "chunk text")]),
    })


@dg.graph_asset(group_name=GROUP, kinds={"python", "parquet"}, ins={"chunks": dg.AssetIn(dagster_type=dg.Nothing)})
def enriched_chunks(chunks):
    """Chunks with their document's metadata: source, title, heading path, pages, format, language,
    dates, token count, access groups and sensitive-data flags (redacted when configured), one
    shard per step; then, over the whole corpus, boilerplate, near-duplicates and superseded
    versions (the indexable chunks)."""
    return enrich_report(enrich_plan(start=chunks).map(enrich_shard).collect())


def _guardrail_metadata(s, indexed) -> dict:
    """Guardrail counts per risk type, the flagged documents, quarantine, boilerplate, near-duplicate
    groups and superseded documents (``ingest_platform.risk_report``)."""
    from ingest_platform import risk_report

    r = risk_report.summarize(s, indexed=indexed)
    return {
        "risk/flagged_chunks": r["flagged_chunks"], "risk/quarantined_chunks": r["quarantined_chunks"],
        "risk/flagged_documents": r["flagged_document_count"],
        **{f"risk/{kind}": n for kind, n in r["chunks_by_risk"].items()},
        "flagged_documents": meta.table(r["flagged_documents"], [
            ("doc_id", "string", "document"), ("policy", "string", "flag, strip or quarantine"),
            ("flags", "string", "risk types found"), ("flagged_chunks", "int", "chunks with a flag"),
            ("quarantined_chunks", "int", "chunks kept out of the index")], limit=50),
        "boilerplate_lines": r["boilerplate_lines"], "boilerplate_removed": r["boilerplate_removed"],
        "boilerplate": meta.table(r["boilerplate_examples"], [
            ("line", "string", "a line repeated across documents"), ("documents", "int", "documents that have it")]),
        "near_duplicate_groups": meta.table(
            [{"representative": g[0], "documents": g} for g in r["near_duplicate_groups"]],
            [("representative", "string", "the newest document: the one a query returns"),
             ("documents", "string", "every document of the group")], limit=50),
        "superseded_documents": meta.table(r["superseded"], [
            ("doc_id", "string", "the older document, left out of results"),
            ("superseded_by", "string", "the newer version")], limit=50),
    }
