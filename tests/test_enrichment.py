"""Enrichment: document fields, titles, languages, timestamps, sensitive flags and redaction."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from ingest_platform.chunking import chunk_elements
from ingest_platform.enrichment import enrich_chunks, file_stem, parse_timestamp
from ingest_platform.models import DEFAULT_MODEL, load_tokenizer
from ingest_platform.schemas import CHUNKS, ELEMENTS, ENRICHED, MANIFEST

MTIME = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(DEFAULT_MODEL)


def ntok(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False).input_ids)


def chunk(doc_id: str, index: int, text: str, **extra) -> dict:
    row = {"chunk_id": f"{doc_id}#{index}", "doc_id": doc_id, "doc_version": "v1", "chunk_index": index,
           "text": text, "heading_path": "", "element_types": ["NarrativeText"], "token_count": 7}
    row.update(extra)
    return row


def doc(doc_id: str, **extra) -> dict:
    source, rel = doc_id.split(":", 1)
    row = {"doc_id": doc_id, "source": source, "source_uri": f"file:///data/{rel}", "relpath": rel, "format": "md",
           "mtime": MTIME, "title": None, "access_groups": ["public"], "metadata_json": '{"team": "x"}'}
    row.update(extra)
    return row


def enrich(chunks: list[dict], docs: list[dict], **kwargs) -> list[dict]:
    out = enrich_chunks(pa.Table.from_pylist(chunks, schema=CHUNKS), pa.Table.from_pylist(docs, schema=MANIFEST), **kwargs)
    assert out.schema == ENRICHED
    return out.to_pylist()


def test_document_fields_copied():
    (r,) = enrich([chunk("docs:a/refund.md", 0, "Plain text.", page_start=1, page_end=2)],
                  [doc("docs:a/refund.md", access_groups=["hr", "public"], title="Refund policy")], redact=False)
    assert (r["source"], r["source_uri"], r["format"]) == ("docs", "file:///data/a/refund.md", "md")
    assert r["access_groups"] == ["hr", "public"] and r["metadata_json"] == '{"team": "x"}'
    assert r["title"] == "Refund policy"
    assert (r["page_start"], r["page_end"], r["chunk_index"], r["doc_version"]) == (1, 2, 0, "v1")
    assert r["text_sha256"] == hashlib.sha256(b"Plain text.").hexdigest()
    assert r["sensitive_types"] == [] and r["sensitive_counts_json"] == "{}" and r["redacted"] is False
    assert r["token_count"] == 7


def test_title_fallbacks():
    chunks = [
        chunk("docs:h.md", 1, "b", heading_path="Later > Sub"),
        chunk("docs:h.md", 0, "a", heading_path="First heading > Inner"),
        chunk("docs:dir/report.final.pdf", 0, "c"),
        chunk("docs:t.md", 0, "d", heading_path="Heading"),
    ]
    docs = [doc("docs:h.md"), doc("docs:dir/report.final.pdf", title="  "), doc("docs:t.md", title="Manifest title")]
    titles = [r["title"] for r in enrich(chunks, docs, redact=False)]
    assert titles == ["First heading", "First heading", "report.final", "Manifest title"]
    # A first chunk that opens with a heading is named by it, whatever its heading path says.
    opening = [chunk("docs:p.pdf", 0, "Lantern report\n1. Methods\n\nBody.", heading_path="1. Methods",
                     element_types=["Title", "NarrativeText"]),
               chunk("docs:q.pdf", 0, "Body first.\n\nMore.", heading_path="Later", element_types=["NarrativeText"])]
    titles = [r["title"] for r in enrich(opening, [doc("docs:p.pdf"), doc("docs:q.pdf")], redact=False)]
    assert titles == ["Lantern report", "Later"]
    assert file_stem("recs:rec-42", {}) == "rec-42"
    assert file_stem("s3src:x", {"source_uri": "s3://bucket/folder/deck.pptx"}) == "deck"


def test_language_and_timestamps():
    chunks = [
        chunk("docs:a.md", 0, "x", languages=["deu", "eng"], created="2023-01-02T03:04:05", last_modified="2024-02-03T04:05:06Z"),
        chunk("docs:a.md", 1, "y", languages=[], created="not a date", last_modified=None),
        chunk("docs:a.md", 2, "z", last_modified="2024-02-03T05:05:06+01:00"),
    ]
    rows = enrich(chunks, [doc("docs:a.md")], redact=False)
    assert [r["language"] for r in rows] == ["deu", "und", "und"]
    assert rows[0]["created_at"] == datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert rows[0]["modified_at"] == datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert rows[1]["created_at"] is None and rows[1]["modified_at"] == MTIME
    assert rows[2]["modified_at"] == datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert parse_timestamp("2021-07-01") == datetime(2021, 7, 1, tzinfo=timezone.utc)


def test_sensitive_flags_without_redaction():
    text = "Write to jane@example.com or call +44 20 7946 0958; backup jane2@example.com."
    (r,) = enrich([chunk("docs:a.md", 0, text)], [doc("docs:a.md")], redact=False)
    assert r["text"] == text and r["redacted"] is False
    assert r["sensitive_types"] == ["email", "phone"]
    assert json.loads(r["sensitive_counts_json"]) == {"email": 2, "phone": 1}


def test_redaction_hashes_and_recounts_the_final_text(tok):
    text = "Write to jane@example.com, card 4111 1111 1111 1111."
    clean = "Nothing to see."
    rows = enrich([chunk("docs:a.md", 0, text, token_count=ntok(tok, text)),
                   chunk("docs:a.md", 1, clean, token_count=ntok(tok, clean))],
                  [doc("docs:a.md")], redact=True, tokenizer=tok)
    r, c = rows
    assert r["text"] == "Write to [REDACTED:email], card [REDACTED:credit_card]."
    assert r["redacted"] is True and r["sensitive_types"] == ["credit_card", "email"]
    assert json.loads(r["sensitive_counts_json"]) == {"credit_card": 1, "email": 1}  # of the original
    assert r["text_sha256"] == hashlib.sha256(r["text"].encode()).hexdigest()
    assert r["token_count"] == ntok(tok, r["text"])
    assert c["text"] == clean and c["redacted"] is False and c["token_count"] == ntok(tok, clean)


def test_redaction_over_the_limit_uses_compact_placeholders(tok):
    emails = " ".join(f"a{i}@b.co" for i in range(10))
    n = ntok(tok, emails)
    assert ntok(tok, " ".join(["[REDACTED:email]"] * 10)) > n  # the long form would grow the chunk
    (r,) = enrich([chunk("docs:a.md", 0, emails, token_count=n)], [doc("docs:a.md")], redact=True, tokenizer=tok, max_tokens=n)
    assert r["text"] == " ".join(["[email]"] * 10)
    assert r["token_count"] == ntok(tok, r["text"]) <= n
    assert json.loads(r["sensitive_counts_json"]) == {"email": 10}


def test_missing_manifest_row_and_empty_input():
    (r,) = enrich([chunk("docs:gone/file.txt", 0, "text")], [], redact=False)
    assert r["source"] is None and r["title"] == "file" and r["modified_at"] is None
    assert enrich([], [doc("docs:a.md")], redact=True) == []


def test_end_to_end_with_chunker(tok):
    elements = pa.Table.from_pylist([
        {"element_index": 0, "type": "Title", "text": "Support", "languages": ["eng"], "page_number": 1},
        {"element_index": 1, "type": "NarrativeText", "text": "Email help@acme.example or dial 555-123-4567.",
         "languages": ["eng"], "page_number": 1, "last_modified": "2024-01-01T00:00:00"},
    ], schema=ELEMENTS)
    chunks = chunk_elements(elements, doc_id="docs:support.md", doc_version="v9", tokenizer=tok, max_tokens=64, overlap_tokens=8)
    out = enrich_chunks(chunks, pa.Table.from_pylist([doc("docs:support.md")], schema=MANIFEST), redact=True, tokenizer=tok, max_tokens=64)
    (r,) = out.to_pylist()
    assert r["text"] == "Support\n\nEmail [REDACTED:email] or dial [REDACTED:phone]."
    assert r["title"] == "Support" and r["heading_path"] == "Support" and r["language"] == "eng"
    assert r["modified_at"] == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert r["chunk_id"] == chunks["chunk_id"][0].as_py() and r["token_count"] == ntok(tok, r["text"])


def test_a_documents_title_is_the_heading_it_opens_with(tmp_path, tok):
    """Real files: a DOCX whose Title sits over Heading 1 sections, and a paper whose title line
    sits over its authors' affiliations, were named after their file and their affiliations."""
    import docx

    from ingest_platform.config import ParsingSettings
    from ingest_platform.parsing import classify_paragraph, parse_path
    from ingest_platform.reconstruct import reconstruct

    from .conftest import EXAMPLE_DOCS, need

    d = docx.Document()
    d.add_heading("Travel policy", 0)
    for heading, text in (("Booking", "Book flights through the travel portal at least 14 days ahead."),
                          ("Expenses", "Submit receipts within 30 days of returning from the trip.")):
        d.add_heading(heading, 1)
        d.add_paragraph(text)
    d.save(tmp_path / "travel.docx")
    paper = need(EXAMPLE_DOCS / "pdf" / "multi-column-2p.pdf")
    titles = {}
    for path in (tmp_path / "travel.docx", paper):
        els = parse_path(path, None, None, ParsingSettings())
        if path.suffix == ".pdf":
            els = reconstruct(els, is_word=tok.vocab.__contains__, classify=classify_paragraph)
        doc_id = f"docs:{path.name}"
        chunks = chunk_elements(els, doc_id=doc_id, doc_version="v", tokenizer=tok, max_tokens=254,
                                overlap_tokens=32, min_tokens=64)
        (titles[path.name],) = {r["title"] for r in enrich(chunks.to_pylist(), [doc(doc_id)], redact=False)}
    assert titles == {"travel.docx": "Travel policy",
                      "multi-column-2p.pdf": "Dense Passage Retrieval for Open-Domain Question Answering"}
