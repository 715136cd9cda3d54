"""Corpus-wide guardrails after enrichment: boilerplate, near-duplicate documents, superseded versions.

Why after enrichment and over the whole corpus: whether a paragraph is boilerplate, or a document a
near-copy of another, depends on the other documents, so it cannot be decided per document like the
rest of enrichment. ``finalize`` takes the per-document enriched chunks and returns the table that
is embedded and indexed:

- **Quarantined** chunks (guardrail policy ``quarantine``) are left out, and so are chunks the
  ``strip`` policy left empty.
- **Boilerplate**: a line (a paragraph, list item or table row of a chunk) of at least
  ``boilerplate_min_chars`` characters found in at least ``boilerplate_min_docs`` documents, such
  as a disclaimer, navigation or a footer, whether it is a chunk of its own or sits inside one.
  ``keep_once`` keeps it in one document (the first by id) and removes it from the others, ``drop``
  removes it everywhere, ``keep`` leaves it. A chunk left empty is dropped. So twenty copies of a
  disclaimer are neither served twenty times nor fail the duplicate-ratio quality gate.
- **Near-duplicates**: documents whose word-shingle sets have a Jaccard similarity of at least
  ``near_duplicate_threshold``, estimated with MinHash and found with LSH (``datasketch``), are
  linked in a group; ``dup_group`` is the group's representative (its newest document). A query
  returns one hit per group by default (``collapse_hits``).
- **Superseded versions**: in a group, a document dated at least ``superseded_min_age_days`` before
  the newest is ``superseded_by`` it and left out of results by default. A document's date is the
  first of: a date in its metadata (sidecar or record: ``effective_date``, ``valid_from``, ``date``,
  ``published``, ``version_date``, ``updated``, ``last_modified``), the file's own modified or
  created date, its modification time.

A document whose chunks this changes gets a ``doc_version`` with a suffix that digests the change,
so the index's incremental sync rewrites exactly those documents when the corpus around them moves
(a twentieth copy of a disclaimer arrives, a newer version of a policy lands).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest_platform.config import GuardrailSettings
from ingest_platform.enrichment import parse_timestamp
from ingest_platform.guardrails import SUPERSEDED_FLAG
from ingest_platform.schemas import ENRICHED, conform

log = logging.getLogger(__name__)

DATE_KEYS = ("effective_date", "valid_from", "date", "published", "version_date", "updated", "last_modified")
VERSION_SEP = "+corpus:"
_WORD = re.compile(r"\w+")


@dataclass
class CorpusReport:
    """What ``finalize`` did, for asset metadata and checks."""

    chunks_in: int = 0
    chunks_out: int = 0
    quarantined_chunks: int = 0
    boilerplate_lines: int = 0  # distinct lines recognised as boilerplate
    boilerplate_removed: int = 0  # occurrences removed from chunks
    boilerplate_chunks_dropped: int = 0  # chunks that were nothing but boilerplate
    empty_chunks_dropped: int = 0  # chunks the strip policy emptied (all of their text was hidden)
    boilerplate_examples: list[dict] = field(default_factory=list)  # line, documents
    near_duplicate_groups: list[list[str]] = field(default_factory=list)  # doc ids, newest first
    superseded: dict[str, str] = field(default_factory=dict)  # old doc id -> newer doc id

    def to_dict(self) -> dict:
        return asdict(self)


def base_version(doc_version: str | None) -> str | None:
    """A ``doc_version`` without the corpus suffix ``finalize`` may have added."""
    return doc_version.split(VERSION_SEP, 1)[0] if doc_version else doc_version


def finalize(
    enriched: pa.Table,
    settings: GuardrailSettings,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    signatures: dict[str, np.ndarray | None] | None = None,
) -> tuple[pa.Table, CorpusReport]:
    """The indexable chunks (``ENRICHED`` schema) made from per-document ``enriched`` chunks.

    ``count_tokens`` re-counts the chunks whose text lost boilerplate (without it they keep their
    count, an upper bound). ``signatures`` caches MinHash signatures by document text across calls
    (read, then replaced by this corpus's): an incremental run hashes only changed documents.
    Returns the table and a ``CorpusReport``.

    >>> from ingest_platform.config import GuardrailSettings
    >>> table, report = finalize(ENRICHED.empty_table(), GuardrailSettings())
    >>> table.num_rows, report.chunks_out
    (0, 0)
    """
    enriched = conform(enriched, ENRICHED)
    report = CorpusReport(chunks_in=enriched.num_rows)
    quarantined = pc.fill_null(enriched["quarantined"], False)
    report.quarantined_chunks = int(pc.sum(pc.cast(quarantined, pa.int64())).as_py() or 0)
    table = enriched.filter(pc.invert(quarantined)) if report.quarantined_chunks else enriched
    if table.num_rows == 0:
        return table, report
    doc_ids = table["doc_id"].to_pylist()
    texts = table["text"].to_pylist()
    new_texts, keep, removed_by_doc = _strip_boilerplate(doc_ids, texts, settings, report)
    for i, t in enumerate(new_texts):
        if keep[i] and not t.strip():  # all of it was hidden and the policy stripped it
            keep[i] = False
            report.empty_chunks_dropped += 1
    changed = [i for i, (a, b) in enumerate(zip(texts, new_texts)) if a != b and keep[i]]
    token_counts = table["token_count"].to_pylist()
    if changed and count_tokens is not None:
        for i, n in zip(changed, count_tokens([new_texts[i] for i in changed])):
            token_counts[i] = n
    groups, superseded = _near_duplicates(table, doc_ids, new_texts, keep, settings, signatures)
    report.near_duplicate_groups = sorted(groups.values(), key=lambda g: g[0])
    report.superseded = superseded
    dup_group = {d: g[0] for g in groups.values() for d in g}
    versions = table["doc_version"].to_pylist()
    out_versions = []
    for i, d in enumerate(doc_ids):
        note = {"boilerplate": removed_by_doc.get(d), "group": dup_group.get(d), "superseded_by": superseded.get(d)}
        if any(note.values()):
            digest = hashlib.sha256(json.dumps(note, sort_keys=True).encode()).hexdigest()[:12]
            out_versions.append(f"{base_version(versions[i])}{VERSION_SEP}{digest}")
        else:
            out_versions.append(base_version(versions[i]))
    cols = {name: table[name] for name in table.column_names}
    cols["text"] = pa.array(new_texts, pa.string())
    cols["text_sha256"] = pa.array([hashlib.sha256(t.encode()).hexdigest() for t in new_texts], pa.string())
    cols["token_count"] = pa.array(token_counts, pa.int32())
    cols["doc_version"] = pa.array(out_versions, pa.string())
    cols["dup_group"] = pa.array([dup_group.get(d) for d in doc_ids], pa.string())
    cols["superseded_by"] = pa.array([superseded.get(d) for d in doc_ids], pa.string())
    out = pa.Table.from_arrays([cols[n] for n in ENRICHED.names], schema=ENRICHED)
    out = out.filter(pa.array(keep, pa.bool_()))
    report.chunks_out = out.num_rows
    return out, report


# ---- boilerplate --------------------------------------------------------------------------------


def _norm(line: str) -> str:
    return " ".join(line.split()).casefold()


def _strip_boilerplate(
    doc_ids: list[str], texts: list[str | None], s: GuardrailSettings, report: CorpusReport
) -> tuple[list[str], list[bool], dict[str, str]]:
    """New texts, which chunks to keep, and per document a digest of what was removed from it."""
    docs_by_line: dict[str, set[str]] = defaultdict(set)
    for d, text in zip(doc_ids, texts):
        for line in (text or "").split("\n"):
            n = _norm(line)
            if len(n) >= s.boilerplate_min_chars:
                docs_by_line[n].add(d)
    boiler = {n: min(ds) for n, ds in docs_by_line.items() if len(ds) >= s.boilerplate_min_docs}
    report.boilerplate_lines = len(boiler)
    report.boilerplate_examples = [
        {"line": n[:120], "documents": len(docs_by_line[n])}
        for n in sorted(boiler, key=lambda n: (-len(docs_by_line[n]), n))[:10]
    ]
    new_texts = [t or "" for t in texts]
    keep = [True] * len(texts)
    if not boiler or s.boilerplate == "keep":
        return new_texts, keep, {}
    removed: dict[str, set[str]] = defaultdict(set)
    for i, (d, text) in enumerate(zip(doc_ids, new_texts)):
        lines = text.split("\n")
        kept = []
        for line in lines:
            n = _norm(line)
            owner = boiler.get(n)
            if owner is not None and not (s.boilerplate == "keep_once" and owner == d):
                removed[d].add(n)
                report.boilerplate_removed += 1
                continue
            kept.append(line)
        if len(kept) != len(lines):
            out = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
            new_texts[i] = out
            if not out:
                keep[i] = False
                report.boilerplate_chunks_dropped += 1
    digests = {d: hashlib.sha256("\n".join(sorted(ns)).encode()).hexdigest()[:12] for d, ns in removed.items()}
    return new_texts, keep, digests


# ---- near-duplicates and supersession -----------------------------------------------------------


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """Distinct 32-bit hashes of the word ``n``-grams of ``text`` (case-folded words).

    Why not datasketch's own per-shingle SHA-1: on a 5,000-document corpus it was 90% of the
    time. Each distinct word is hashed once (CRC-32), and the n-grams combine the word hashes with a
    polynomial in numpy; MinHash itself, LSH and the Jaccard estimates stay datasketch's."""
    words = _WORD.findall(text.casefold())
    if not words:
        return np.zeros(0, dtype=np.uint64)
    cache = _WORD_HASHES
    w = np.fromiter((cache.get(x) or cache.setdefault(x, zlib.crc32(x.encode()) or 1) for x in words),
                    dtype=np.uint64, count=len(words))
    if len(w) < n:
        n = len(w)
    h = np.zeros(len(w) - n + 1, dtype=np.uint64)
    for j in range(n):
        h = (h * np.uint64(1_000_003) + w[j : len(w) - n + 1 + j]) & np.uint64(0xFFFFFFFF)
    return np.unique(h)


_WORD_HASHES: dict[str, int] = {}


def _minhash(hashes: np.ndarray, template):
    """A datasketch ``MinHash`` of precomputed 32-bit shingle ``hashes``, sharing ``template``'s
    permutations (drawing them again for every document took longer than the hashing)."""
    from datasketch import MinHash

    m = MinHash(num_perm=len(template.hashvalues), seed=1, hashfunc=int, permutations=template.permutations,
                scheme=template.scheme)
    m.update_batch(hashes.tolist())
    return m


def _near_duplicates(
    table: pa.Table, doc_ids: list[str], texts: list[str], keep: list[bool], s: GuardrailSettings,
    cache: dict[str, np.ndarray | None] | None = None,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Groups (root -> doc ids, representative first) and superseded (old -> newest)."""
    from datasketch import MinHashLSH

    index = table["chunk_index"].to_pylist()
    parts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, d in enumerate(doc_ids):
        if keep[i]:
            parts[d].append((index[i] or 0, texts[i]))
    docs = sorted(parts)
    from datasketch import MinHash

    template = MinHash(num_perm=s.minhash_permutations, seed=1, hashfunc=int)
    fresh: dict[str, np.ndarray | None] = {}
    usable, hashes = [], []
    for i, d in enumerate(docs):
        text = "\n".join(t for _, t in sorted(parts[d]))
        key = hashlib.sha1(f"{s.shingle_words}:{s.minhash_permutations}:{text}".encode()).hexdigest()
        if cache is not None and key in cache:
            values = cache[key]
        else:
            sh = shingle_hashes(text, s.shingle_words)
            # Too few shingles and any two short notes look alike: those documents are not compared.
            values = _minhash(sh, template).hashvalues if len(sh) >= 8 else None
        fresh[key] = values
        if values is not None:
            usable.append(i)
            hashes.append(MinHash(num_perm=s.minhash_permutations, seed=1, hashvalues=values,
                                  permutations=template.permutations, scheme=template.scheme))
    if cache is not None:  # what the next run can reuse: this corpus's signatures, nothing older
        cache.clear()
        cache.update(fresh)
    if len(usable) < 2:
        return {}, {}
    # Weighted toward recall: with datasketch's even weights a pair at Jaccard 0.8 became an LSH
    # candidate only 87% of the time (0.998 with these); candidates are checked against the
    # estimate below, so the extra candidates cost a comparison, not a false link.
    lsh = MinHashLSH(threshold=s.near_duplicate_threshold, num_perm=s.minhash_permutations, weights=(0.1, 0.9))
    for i, m in zip(usable, hashes):
        lsh.insert(docs[i], m)
    by_doc = {docs[i]: m for i, m in zip(usable, hashes)}
    parent = {d: d for d in by_doc}

    def find(d: str) -> str:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    for d, m in by_doc.items():
        for other in lsh.query(m):
            # LSH candidates are probable; the estimate itself must reach the threshold.
            if other != d and m.jaccard(by_doc[other]) >= s.near_duplicate_threshold:
                a, b = find(d), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = defaultdict(list)
    for d in by_doc:
        members[find(d)].append(d)
    dates = _doc_dates(table)
    groups, superseded = {}, {}
    for root, ds in members.items():
        if len(ds) < 2:
            continue
        # Newest first (undated last), then by id: the first is the representative.
        ordered = sorted(ds, key=lambda d: (dates.get(d) is None, -(dates[d].timestamp() if dates.get(d) else 0), d))
        groups[root] = ordered
        newest = dates.get(ordered[0])
        if newest is None:
            continue
        for d in ordered[1:]:
            when = dates.get(d)
            if when is not None and (newest - when).total_seconds() >= s.superseded_min_age_days * 86400:
                superseded[d] = ordered[0]
    return groups, superseded


def _doc_dates(table: pa.Table) -> dict[str, datetime]:
    """Each document's date: its metadata's, else the latest modified (or created) date of its chunks."""
    out: dict[str, datetime] = {}
    cols = table.select(["doc_id", "metadata_json", "modified_at", "created_at"]).to_pylist()
    for row in cols:
        d = row["doc_id"]
        meta = _metadata_date(row["metadata_json"])
        if meta is not None:
            out[d] = meta
            continue
        when = row["modified_at"] or row["created_at"]
        if when is not None and (d not in out or when > out[d]):
            out[d] = when
    return out


def _metadata_date(metadata_json: str | None) -> datetime | None:
    if not metadata_json:
        return None
    try:
        meta = json.loads(metadata_json)
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    for key in DATE_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and (ts := parse_timestamp(value)) is not None:
            return ts
    return None


# ---- query-time post-step -----------------------------------------------------------------------

GUARD_COLUMNS = ("risk_flags", "dup_group", "superseded_by")


def collapse_hits(hits: Sequence[Any], k: int, *, collapse_near_duplicates: bool = True) -> list[Any]:
    """The first ``k`` hits with at most one per near-duplicate group (the best-ranked one) when
    ``collapse_near_duplicates``; hits keep their order. Hits need ``dup_group`` attributes."""
    out, seen = [], set()
    for hit in hits:
        group = getattr(hit, "dup_group", None)
        if collapse_near_duplicates and group is not None:
            if group in seen:
                continue
            seen.add(group)
        out.append(hit)
        if len(out) == k:
            break
    return out


def hit_flags(row: dict) -> list[str]:
    """A hit's ``risk_flags``: the chunk's own, plus ``superseded`` when a newer version exists."""
    flags = list(row.get("risk_flags") or [])
    if row.get("superseded_by") and SUPERSEDED_FLAG not in flags:
        flags.append(SUPERSEDED_FLAG)
    return flags
