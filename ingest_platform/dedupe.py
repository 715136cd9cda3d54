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
    Returns the table and a ``CorpusReport``. One table is one shard of ``finalize_shards``.

    >>> from ingest_platform.config import GuardrailSettings
    >>> table, report = finalize(ENRICHED.empty_table(), GuardrailSettings())
    >>> table.num_rows, report.chunks_out
    (0, 0)
    """
    out: dict[str, pa.Table] = {}
    report = finalize_shards(lambda shard, columns=None: enriched if columns is None else enriched.select(columns),
                             out.__setitem__, ["all"], settings, count_tokens, signatures)
    return out.get("all", conform(ENRICHED.empty_table(), ENRICHED)), report


Reader = Callable[..., pa.Table]  # (shard, columns=None) -> that shard's per-document enriched chunks


def finalize_shards(
    read: Reader,
    write: Callable[[str, pa.Table], None],
    shards: Sequence[str],
    settings: GuardrailSettings,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    signatures: dict[str, np.ndarray | None] | None = None,
) -> CorpusReport:
    """``finalize`` over a corpus held in shards, one shard in memory at a time.

    Three passes: the lines of every shard are counted (which are boilerplate is a corpus-wide
    fact); each shard is stripped and its documents' MinHash signatures taken (kept: 4 bytes a
    permutation a document) and near-duplicate groups are found over all of them; then each shard
    is stripped again, linked and handed to ``write(shard, table)``.
    """
    report = CorpusReport()
    boiler, line_docs = _boilerplate(read, shards, settings)
    report.boilerplate_lines = len(boiler)
    top = sorted(boiler, key=lambda h: (-line_docs[h], boiler[h], h))[:10]
    examples: dict[int, str | None] = {h: None for h in top}  # filled with the lines' text below

    fresh: dict[str, np.ndarray | None] = {}
    by_doc: dict[str, np.ndarray] = {}
    dates: dict[str, datetime] = {}
    for shard in shards:
        table = _live(read(shard, ["doc_id", "chunk_index", "text", "quarantined", "metadata_json", "modified_at",
                                   "created_at"]))
        doc_ids = table["doc_id"].to_pylist()
        new_texts, keep, _ = _strip(doc_ids, table["text"].to_pylist(), boiler, settings, None,
                                    examples if None in examples.values() else None)
        by_doc.update(_signatures(table, doc_ids, new_texts, keep, settings, signatures, fresh))
        dates.update(_doc_dates(table))
    report.boilerplate_examples = [{"line": (examples[h] or "")[:120], "documents": line_docs[h]} for h in top]
    if signatures is not None:  # what the next run can reuse: this corpus's signatures, nothing older
        signatures.clear()
        signatures.update(fresh)
    groups, superseded = _groups(by_doc, dates, settings)
    report.near_duplicate_groups = sorted(groups.values(), key=lambda g: g[0])
    report.superseded = superseded
    dup_group = {d: g[0] for g in groups.values() for d in g}

    for shard in shards:
        enriched = conform(read(shard), ENRICHED)
        report.chunks_in += enriched.num_rows
        quarantined = pc.fill_null(enriched["quarantined"], False)
        n_quarantined = int(pc.sum(pc.cast(quarantined, pa.int64())).as_py() or 0)
        report.quarantined_chunks += n_quarantined
        table = enriched.filter(pc.invert(quarantined)) if n_quarantined else enriched
        out = _apply(table, boiler, dup_group, superseded, settings, count_tokens, report)
        report.chunks_out += out.num_rows
        write(shard, out)
    return report


def _live(table: pa.Table) -> pa.Table:
    """Without quarantined chunks: they are neither indexed nor counted."""
    if table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.fill_null(table["quarantined"], False)))


def _apply(table: pa.Table, boiler: dict[int, str], dup_group: dict[str, str], superseded: dict[str, str],
           settings: GuardrailSettings, count_tokens, report: CorpusReport) -> pa.Table:
    """One shard's indexable chunks: boilerplate stripped, near-duplicate and superseded links set,
    and a ``doc_version`` suffix digesting what changed (so the index rewrites exactly those)."""
    if table.num_rows == 0:
        return conform(table, ENRICHED)
    doc_ids = table["doc_id"].to_pylist()
    texts = table["text"].to_pylist()
    new_texts, keep, removed_by_doc = _strip(doc_ids, texts, boiler, settings, report)
    for i, t in enumerate(new_texts):
        if keep[i] and not t.strip():  # all of it was hidden and the policy stripped it
            keep[i] = False
            report.empty_chunks_dropped += 1
    changed = [i for i, (a, b) in enumerate(zip(texts, new_texts)) if a != b and keep[i]]
    token_counts = table["token_count"].to_pylist()
    if changed and count_tokens is not None:
        for i, n in zip(changed, count_tokens([new_texts[i] for i in changed])):
            token_counts[i] = n
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
    return out.filter(pa.array(keep, pa.bool_()))


# ---- boilerplate --------------------------------------------------------------------------------


def _norm(line: str) -> str:
    return " ".join(line.split()).casefold()


def _line_key(normalised: str) -> int:
    """A 64-bit key of a normalised line: the corpus-wide count holds keys, never the lines."""
    return int.from_bytes(hashlib.blake2b(normalised.encode(), digest_size=8).digest(), "little")


def _boilerplate(read: Reader, shards: Sequence[str], s: GuardrailSettings) -> tuple[dict[int, str], dict[int, int]]:
    """Boilerplate lines over every shard, one shard in memory at a time: line key -> the document
    that keeps it (the first by id), and line key -> how many documents have it.

    Why keys and numpy rather than a dict of lines: the lines of a corpus are most of its text (a
    records corpus has one line per chunk), so counting them as strings held a second copy of the
    corpus in memory. Here it is 12 bytes a (line, document) pair."""
    keys: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    names: list[str] = []
    for shard in shards:
        t = _live(read(shard, ["doc_id", "text", "quarantined"]))
        per_doc: dict[str, set[int]] = defaultdict(set)
        for d, text in zip(t["doc_id"].to_pylist(), t["text"].to_pylist()):
            for line in (text or "").split("\n"):
                n = _norm(line)
                if len(n) >= s.boilerplate_min_chars:
                    per_doc[d].add(_line_key(n))
        for d, ks in per_doc.items():
            keys.append(np.fromiter(ks, dtype=np.uint64, count=len(ks)))
            owners.append(np.full(len(ks), len(names), dtype=np.int32))
            names.append(d)
    if not keys:
        return {}, {}
    k, o = np.concatenate(keys), np.concatenate(owners)
    del keys, owners
    uniq, counts = np.unique(k, return_counts=True)
    often = counts >= s.boilerplate_min_docs
    frequent = uniq[often]
    if not len(frequent):
        return {}, {}
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.array(names, dtype=object))] = np.arange(len(names))
    mask = np.isin(k, frequent)
    k, o = k[mask], o[mask]
    order = np.lexsort((rank[o], k))  # by key, then by document id
    k, o = k[order], o[order]
    first = np.concatenate(([True], k[1:] != k[:-1]))
    return ({int(key): names[i] for key, i in zip(k[first], o[first])},
            dict(zip(frequent.tolist(), counts[often].tolist())))


def _strip(
    doc_ids: list[str], texts: list[str | None], boiler: dict[int, str], s: GuardrailSettings,
    report: CorpusReport | None, examples: dict[int, str] | None = None,
) -> tuple[list[str], list[bool], dict[str, str]]:
    """New texts without the boilerplate lines (``boiler``: line key -> the document that keeps it),
    which chunks to keep, and per document a digest of what was removed from it. ``examples``
    (line key -> None) gets the text of the lines it asks for."""
    new_texts = [t or "" for t in texts]
    keep = [True] * len(texts)
    if not boiler or s.boilerplate == "keep" and examples is None:
        return new_texts, keep, {}
    removed: dict[str, set[str]] = defaultdict(set)
    for i, (d, text) in enumerate(zip(doc_ids, new_texts)):
        lines = text.split("\n")
        kept = []
        for line in lines:
            n = _norm(line)
            key = _line_key(n) if len(n) >= s.boilerplate_min_chars else None
            owner = boiler.get(key) if key is not None else None
            if owner is not None and examples is not None and key in examples and examples[key] is None:
                examples[key] = n
            if owner is not None and s.boilerplate != "keep" and not (s.boilerplate == "keep_once" and owner == d):
                removed[d].add(n)
                if report is not None:
                    report.boilerplate_removed += 1
                continue
            kept.append(line)
        if len(kept) != len(lines):
            out = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
            new_texts[i] = out
            if not out:
                keep[i] = False
                if report is not None:
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


def _template(s: GuardrailSettings):
    from datasketch import MinHash

    return MinHash(num_perm=s.minhash_permutations, seed=1, hashfunc=int)


def _minhash(hashes: np.ndarray, template):
    """A datasketch ``MinHash`` of precomputed 32-bit shingle ``hashes``, sharing ``template``'s
    permutations (drawing them again for every document took longer than the hashing)."""
    from datasketch import MinHash

    m = MinHash(num_perm=len(template.hashvalues), seed=1, hashfunc=int, permutations=template.permutations,
                scheme=template.scheme)
    m.update_batch(hashes.tolist())
    return m


def _signatures(
    table: pa.Table, doc_ids: list[str], texts: list[str], keep: list[bool], s: GuardrailSettings,
    cache: dict[str, np.ndarray | None] | None, fresh: dict[str, np.ndarray | None],
) -> dict[str, np.ndarray]:
    """doc id -> MinHash signature of the document's (stripped) text; documents with too few
    shingles are left out. ``cache`` is read by text key, ``fresh`` collects this corpus's."""
    index = table["chunk_index"].to_pylist()
    parts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, d in enumerate(doc_ids):
        if keep[i]:
            parts[d].append((index[i] or 0, texts[i]))
    template = None
    out: dict[str, np.ndarray] = {}
    for d in sorted(parts):
        text = "\n".join(t for _, t in sorted(parts[d]))
        key = hashlib.sha1(f"{s.shingle_words}:{s.minhash_permutations}:{text}".encode()).hexdigest()
        if cache is not None and key in cache:
            values = cache[key]
        else:
            sh = shingle_hashes(text, s.shingle_words)
            # Too few shingles and any two short notes look alike: those documents are not compared.
            if len(sh) >= 8:
                template = template or _template(s)
                values = _minhash(sh, template).hashvalues
            else:
                values = None
        fresh[key] = values
        if values is not None:
            out[d] = values
    return out


def _groups(signatures: dict[str, np.ndarray], dates: dict[str, datetime],
            s: GuardrailSettings) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Groups (root -> doc ids, representative first) and superseded (old -> newest).

    LSH banding with datasketch's own parameters (``_optimal_param``), weighted toward recall: with
    even weights a pair at Jaccard 0.8 became a candidate only 87% of the time (0.998 with these);
    every candidate is checked against the MinHash estimate, so extra candidates cost a comparison,
    not a false link. The bands are bucketed with numpy over one signature matrix rather than in
    ``MinHashLSH``, whose per-band Python sets took about 7 KB a document (350 MB for 50,000)."""
    from datasketch.lsh import _optimal_param

    if len(signatures) < 2:
        return {}, {}
    docs = sorted(signatures)
    sig = np.stack([np.asarray(signatures[d], dtype=np.uint32) for d in docs])
    bands, rows = _optimal_param(s.near_duplicate_threshold, s.minhash_permutations, 0.1, 0.9)
    parent = list(range(len(docs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(bands):
        key = np.zeros(len(docs), dtype=np.uint64)
        for j in range(band * rows, (band + 1) * rows):
            key = key * np.uint64(1_000_003) + sig[:, j].astype(np.uint64)
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        ends = np.append(starts[1:], len(order))
        for a, b in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = order[a:b].tolist()
            for x, i in enumerate(members):
                for j in members[x + 1:]:
                    if find(i) != find(j) and np.count_nonzero(sig[i] == sig[j]) / sig.shape[1] >= s.near_duplicate_threshold:
                        ri, rj = find(i), find(j)
                        parent[max(ri, rj)] = min(ri, rj)
    members: dict[str, list[str]] = defaultdict(list)
    for i, d in enumerate(docs):
        members[docs[find(i)]].append(d)
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
