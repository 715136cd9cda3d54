"""Arrow schemas of the tables passed between stages.

Stages exchange ``pyarrow.Table``s with these exact schemas; ``conform`` makes a table match one
(adding missing nullable columns, casting, ordering) so every writer produces identical files.
"""

from __future__ import annotations

import pyarrow as pa

# One row per document seen by a scan (the persistent manifest).
MANIFEST = pa.schema(
    [
        ("doc_id", pa.string()),  # "<source name>:<relative path or record id>"
        ("source", pa.string()),
        ("source_uri", pa.string()),
        ("relpath", pa.string()),
        ("format", pa.string()),  # detected: pdf, html, md, txt, docx, pptx, xlsx, csv, tsv, eml, ...
        ("size", pa.int64()),
        ("mtime", pa.timestamp("us", tz="UTC")),
        ("content_sha256", pa.string()),  # of the bytes (or record text): the parse cache key
        ("meta_sha256", pa.string()),  # of the sidecar / record metadata / access rules result
        ("doc_version", pa.string()),  # content + meta + pipeline settings: what stages reconcile on
        ("title", pa.string()),
        ("access_groups", pa.list_(pa.string())),
        ("metadata_json", pa.string()),  # sidecar keys other than access_groups, record metadata
        ("status", pa.string()),  # new / changed / unchanged / deleted / failed
        ("reason", pa.string()),  # why it failed, else null
        ("first_seen", pa.timestamp("us", tz="UTC")),
        ("last_seen", pa.timestamp("us", tz="UTC")),
        ("last_changed", pa.timestamp("us", tz="UTC")),
    ]
)

# One row per element unstructured returned for a document (cached per content hash).
ELEMENTS = pa.schema(
    [
        ("element_index", pa.int32()),
        ("element_id", pa.string()),
        ("type", pa.string()),  # unstructured category: Title, NarrativeText, ListItem, Table, ...
        ("text", pa.string()),
        ("text_as_html", pa.string()),  # tables only
        ("page_number", pa.int32()),
        ("category_depth", pa.int32()),
        ("parent_id", pa.string()),
        ("languages", pa.list_(pa.string())),  # ISO 639-3 codes, as unstructured reports them
        ("last_modified", pa.string()),  # ISO timestamp from the file's own metadata, when known
        ("created", pa.string()),
        # The element's box on its page (paged formats; points, y grows downwards): what text
        # reconstruction (``ingest_platform.reconstruct``) joins printed lines by.
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
    ]
)

# One row per chunk (chunking output).
CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("doc_version", pa.string()),
        ("chunk_index", pa.int32()),
        ("text", pa.string()),
        ("heading_path", pa.string()),  # "Refund policy > Exceptions"
        ("page_start", pa.int32()),
        ("page_end", pa.int32()),
        ("element_types", pa.list_(pa.string())),
        ("token_count", pa.int32()),
        ("languages", pa.list_(pa.string())),
        ("last_modified", pa.string()),
        ("created", pa.string()),
    ]
)

# Chunks plus document-level metadata and flags (enrichment output, and the index's columns
# besides the vector).
ENRICHED = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("doc_version", pa.string()),
        ("chunk_index", pa.int32()),
        ("text", pa.string()),
        ("text_sha256", pa.string()),  # the embedding cache key (with the model id)
        ("source", pa.string()),
        ("source_uri", pa.string()),
        ("title", pa.string()),
        ("heading_path", pa.string()),
        ("page_start", pa.int32()),
        ("page_end", pa.int32()),
        ("format", pa.string()),
        ("language", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("modified_at", pa.timestamp("us", tz="UTC")),
        ("token_count", pa.int32()),
        ("element_types", pa.list_(pa.string())),
        ("access_groups", pa.list_(pa.string())),
        ("sensitive_types", pa.list_(pa.string())),
        ("sensitive_counts_json", pa.string()),  # {"email": 2, "phone": 1}
        ("redacted", pa.bool_()),
        ("metadata_json", pa.string()),
        # Guardrails (ingest_platform.guardrails): risk types found in the chunk, their counts, and
        # whether the source's policy keeps it out of the index (never true in the index itself).
        ("risk_flags", pa.list_(pa.string())),
        ("risk_counts_json", pa.string()),  # {"hidden_html": 1, "instruction_override": 2}
        ("quarantined", pa.bool_()),
        # Corpus-wide (ingest_platform.dedupe): the near-duplicate group (its representative
        # document's id) and the newer document that supersedes this one, else null.
        ("dup_group", pa.string()),
        ("superseded_by", pa.string()),
    ]
)


def conform(table: pa.Table | None, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, in order; missing ones become nulls."""
    if table is None or table.num_rows == 0 and table.num_columns == 0:
        return schema.empty_table()
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)
