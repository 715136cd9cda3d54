"""Enrichment: chunks plus the document-level fields search needs, and sensitive-data flags.

Why a separate stage: document fields (title, source, access groups) change without the text
changing, and redaction is a policy switch; keeping both out of chunking means neither re-chunks.

Guardrails (``ingest_platform.guardrails``) run first, per chunk, with the source's policy: they
record ``risk_flags`` / ``risk_counts_json``, remove their parse-time markers (and under ``strip``
the hidden or invisible parts), and set ``quarantined``; corpus-wide handling (boilerplate,
near-duplicates, superseded versions) follows in ``ingest_platform.dedupe``.

Sensitive values are always *counted* on the original text (so audits see what was there), and when
``redact`` is on the text is replaced before anything downstream (hash, embedding, index) sees it.

Redaction and the token limit: ``[REDACTED:email]`` is 7 word pieces while ``a@b.co`` is 5, so a
chunk packed to the limit can grow past it. When a ``tokenizer`` is given, redacted chunks are
re-counted; when ``max_tokens`` is also given, a chunk that grew past it is redacted again with the
compact placeholders (``[email]``: 3-6 word pieces with the bundled tokenizer, against at least
5-7 for the shortest value of each type, so they never grow a chunk), and one still over the limit
is logged (the embedder would then truncate its last few pieces). The pipeline should pass
``max_tokens=settings.chunking.max_tokens``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Mapping
from urllib.parse import urlparse

import pyarrow as pa

from ingest_platform import guardrails, sensitive
from ingest_platform.chunking import HEADING_SEP, count_tokens
from ingest_platform.reconstruct import MAX_HEADING_CHARS
from ingest_platform.schemas import ENRICHED

log = logging.getLogger(__name__)

UNKNOWN_LANGUAGE = "und"  # ISO 639-2 "undetermined"
_DOC_FIELDS = ("source", "source_uri", "relpath", "format", "title", "mtime", "access_groups", "metadata_json")


def enrich_chunks(
    chunks: pa.Table,
    documents: pa.Table,
    *,
    redact: bool,
    tokenizer: Any = None,
    max_tokens: int | None = None,
    risk_policy: str | Mapping[str, str] = "flag",
) -> pa.Table:
    """``CHUNKS`` rows joined with their ``MANIFEST`` row, flagged and optionally redacted.

    ``tokenizer`` (recommended whenever ``redact``) keeps ``token_count`` exact after redaction;
    without it the pre-redaction count is kept. ``max_tokens`` enables the compact-placeholder
    fallback described in the module docstring. ``risk_policy`` is the guardrail policy
    (``flag`` / ``strip`` / ``quarantine``, see ``ingest_platform.guardrails``), one for all chunks
    or per source name (a source not in the mapping gets ``flag``). Guardrails run first, on the
    text as parsed, so sensitive-data counts and redaction see the text that will be indexed.
    """
    if chunks.num_rows == 0:
        return ENRICHED.empty_table()
    rows = chunks.to_pylist()
    docs = _documents_by_id(documents)
    missing = {r["doc_id"] for r in rows} - docs.keys()
    if missing:
        log.warning("%d chunked documents have no manifest row; their document fields are null", len(missing))
    titles = _titles(rows, docs)
    risks = [guardrails.assess(r["text"] or "", _policy_for(docs.get(r["doc_id"], {}).get("source"), risk_policy))
             for r in rows]
    flags = [_flag(a.text, redact, changed=a.text != (r["text"] or "")) for r, a in zip(rows, risks)]
    token_counts = _token_counts(rows, flags, tokenizer, max_tokens)
    return _to_table(rows, docs, titles, flags, token_counts, risks)


def _policy_for(source: str | None, risk_policy: str | Mapping[str, str]) -> str:
    if isinstance(risk_policy, str):
        return risk_policy
    return risk_policy.get(source or "", "flag")


# ---- per-chunk pieces ---------------------------------------------------------------------------


class _Flags:
    """Sensitive-data result for one chunk: counts on the original, and the text to keep."""

    __slots__ = ("counts", "text", "redacted", "original", "changed")

    def __init__(self, counts: dict[str, int], text: str, redacted: bool, original: str, changed: bool = False) -> None:
        self.counts, self.text, self.redacted, self.original = counts, text, redacted, original
        # The text differs from the chunk's (redacted, or guardrails removed something): recount.
        self.changed = changed or redacted


def _flag(text: str, redact: bool, changed: bool = False) -> _Flags:
    if not redact:
        return _Flags(sensitive.find_sensitive(text), text, False, text, changed)
    counts, redacted_text = sensitive.scan(text)
    return _Flags(counts, redacted_text, bool(counts), text, changed)


def _token_counts(rows: list[dict], flags: list[_Flags], tokenizer: Any, max_tokens: int | None) -> list[int | None]:
    """The chunk's own count, re-counted (in one batch) for chunks whose text was redacted."""
    counts = [r["token_count"] for r in rows]
    changed = [i for i, f in enumerate(flags) if f.changed]
    if not changed:
        return counts
    if tokenizer is None:
        log.warning("%d chunks redacted or stripped without a tokenizer: token_count is the original count", len(changed))
        return counts
    for i, n in zip(changed, count_tokens(tokenizer, [flags[i].text for i in changed])):
        counts[i] = n
    if max_tokens is not None:
        _shrink_over_limit(flags, counts, [i for i in changed if flags[i].redacted], tokenizer, max_tokens)
    return counts


def _shrink_over_limit(flags: list[_Flags], counts: list, changed: list[int], tokenizer: Any, max_tokens: int) -> None:
    """Re-redact chunks that redaction pushed over the limit with the compact placeholders."""
    over = [i for i in changed if counts[i] > max_tokens]
    if not over:
        return
    compact = [sensitive.redact(flags[i].original, compact=True) for i in over]
    for i, text, n in zip(over, compact, count_tokens(tokenizer, compact)):
        flags[i].text, counts[i] = text, n
    still = sum(counts[i] > max_tokens for i in over)
    log.info("%d redacted chunks went over %d tokens; compact placeholders used", len(over), max_tokens)
    if still:
        log.warning("%d redacted chunks remain over %d tokens; their tail will be truncated when embedded", still, max_tokens)


# ---- document fields ----------------------------------------------------------------------------


def _documents_by_id(documents: pa.Table) -> dict[str, dict[str, Any]]:
    names = [n for n in ("doc_id", *_DOC_FIELDS) if n in documents.column_names]
    return {row["doc_id"]: row for row in documents.select(names).to_pylist()}


def _titles(rows: list[dict], docs: dict[str, dict]) -> dict[str, str]:
    """Per document: the manifest title, else the heading it opens with, else its first heading,
    else the file name stem.

    The opening heading is read from the first chunk, which starts with it: a heading path drops
    a title followed by a heading of its own level (a DOCX's Title over its first Heading 1, a
    paper's title line over its authors or ``1. Introduction``), so the path alone named such
    documents after their first section.
    """
    first_heading: dict[str, tuple[int, str]] = {}
    for r in rows:
        index = r.get("chunk_index") or 0
        if r["doc_id"] in first_heading and index >= first_heading[r["doc_id"]][0]:
            continue
        heading = _opening_heading(r) if index == 0 else ""
        path = (r.get("heading_path") or "").strip()
        if heading or path:
            first_heading[r["doc_id"]] = (index, heading or path.split(HEADING_SEP)[0].strip())
    out = {}
    for doc_id in {r["doc_id"] for r in rows}:
        doc = docs.get(doc_id, {})
        manifest_title = (doc.get("title") or "").strip()
        heading = first_heading.get(doc_id, (0, ""))[1]
        out[doc_id] = manifest_title or heading or file_stem(doc_id, doc)
    return out


def _opening_heading(first_chunk: dict) -> str:
    """The heading a document's first chunk starts with (its first line), or ``""``."""
    types = first_chunk.get("element_types") or []
    if not types or types[0] != "Title":
        return ""
    line = (first_chunk.get("text") or "").lstrip().split("\n", 1)[0].strip()
    return line if len(line) <= MAX_HEADING_CHARS else ""


def file_stem(doc_id: str, doc: dict[str, Any]) -> str:
    """The document's file name without extension, from its relative path, URI or id."""
    for candidate in (doc.get("relpath"), urlparse(doc.get("source_uri") or "").path, doc_id.split(":", 1)[-1]):
        stem = PurePosixPath(candidate or "").stem
        if stem:
            return stem
    return doc_id


@functools.lru_cache(maxsize=4096)
def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime (naive means UTC); None when unparseable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


# ---- output -------------------------------------------------------------------------------------


def _to_table(
    rows: list[dict], docs: dict[str, dict], titles: dict[str, str], flags: list[_Flags], token_counts: list,
    risks: list[guardrails.Assessment],
) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in ENRICHED.names}
    for r, f, n, a in zip(rows, flags, token_counts, risks):
        doc = docs.get(r["doc_id"], {})
        for name in ("chunk_id", "doc_id", "doc_version", "chunk_index", "heading_path", "page_start", "page_end", "element_types"):
            cols[name].append(r.get(name))
        for name in ("source", "source_uri", "format", "access_groups", "metadata_json"):
            cols[name].append(doc.get(name))
        cols["text"].append(f.text)
        cols["text_sha256"].append(hashlib.sha256(f.text.encode()).hexdigest())
        cols["title"].append(titles[r["doc_id"]])
        cols["language"].append((r.get("languages") or [UNKNOWN_LANGUAGE])[0] or UNKNOWN_LANGUAGE)
        cols["created_at"].append(parse_timestamp(r.get("created")))
        cols["modified_at"].append(parse_timestamp(r.get("last_modified")) or doc.get("mtime"))
        cols["token_count"].append(n)
        cols["sensitive_types"].append(sorted(f.counts))
        cols["sensitive_counts_json"].append(json.dumps(f.counts, sort_keys=True))
        cols["redacted"].append(f.redacted)
        cols["risk_flags"].append(a.flags)
        cols["risk_counts_json"].append(json.dumps(a.counts, sort_keys=True))
        cols["quarantined"].append(a.quarantined)
        cols["dup_group"].append(None)  # set corpus-wide by ingest_platform.dedupe
        cols["superseded_by"].append(None)
    return pa.table(cols, schema=ENRICHED)
