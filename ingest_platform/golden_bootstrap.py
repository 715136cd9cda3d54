"""A starter golden set derived from the corpus itself, for a corpus nobody has written one for.

A corpus without a golden set cannot be gated, so its first builds would be promoted blind. The
documents already say what they are about: a title or a section heading is a short query whose
answer is the document it heads. ``bootstrap`` turns those into golden entries, one document at a
time (titles first, then headings), skipping texts that cannot be a fair query:

- fewer than two content words ("Overview", "FAQ"), or a file name rather than a title;
- a text shared by several documents ("Introduction", "Exceptions"): it has no single answer;
- documents no access group can see.

Every entry is tagged ``synthetic`` (and ``title`` or ``heading``) and says where it came from. What
it proves, and what not: heading queries share words with the chunks they head, so the set catches
a broken build (garbled or missing text, a wrong model, an empty or mis-filtered index), not a
subtle ranking regression. Replace it with real queries as they come (``golden add-feedback``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ingest_platform import state
from ingest_platform.config import Settings
from ingest_platform.chunking import HEADING_SEP
from ingest_platform.golden import SYNTHETIC_TAG
from ingest_platform.monitoring import terms
from ingest_platform.storage import atomic_write_text

_FILE_NAME = re.compile(r"^[\w.-]+\.[A-Za-z0-9]{2,5}$")
MAX_QUERY_CHARS = 200


@dataclass
class BootstrapResult:
    path: str
    entries: int
    documents: int  # documents in the index
    covered: int  # documents with at least one entry
    skipped: dict[str, int]  # reason -> candidate texts skipped
    index_version: int

    def to_json(self) -> dict:
        return self.__dict__


def _candidates(rows: list[dict]) -> tuple[dict[str, list[tuple[str, str]]], dict[str, tuple[str, ...]]]:
    """doc id -> [(kind, text)] (title first, then headings in order), and doc id -> groups."""
    cands: dict[str, list[tuple[str, str]]] = defaultdict(list)
    groups: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        doc = r["doc_id"]
        groups[doc].update(r.get("access_groups") or [])
        if r.get("title"):
            cands[doc].append(("title", r["title"]))
        for part in (r.get("heading_path") or "").split(HEADING_SEP):
            if part.strip():
                cands[doc].append(("heading", part))
    out = {}
    for doc, items in cands.items():
        seen: dict[str, tuple[str, str]] = {}
        for kind, text in items:
            text = " ".join(text.split())[:MAX_QUERY_CHARS]
            seen.setdefault(text.casefold(), (kind, text))
        out[doc] = list(seen.values())
    return out, {d: tuple(sorted(g)) for d, g in groups.items()}


def bootstrap(settings: Settings, out: str | Path | None = None, n: int = 50, *, ref: str | int = "production",
              seed: int = 0) -> BootstrapResult:
    """Write up to ``n`` synthetic golden entries for the index version ``ref`` to ``out``
    (default ``<home>/golden/synthetic.jsonl``); see the module docstring."""
    from ingest_platform.evaluation import parse_golden_line
    from ingest_platform.index import IndexStore

    store = IndexStore(settings.lancedb_uri, settings.index.table, home=settings.state)
    version = store.version_of(ref)
    table = store.checkout(version)
    rows = table.search().select(["doc_id", "title", "heading_path", "access_groups"]).limit(None).to_arrow().to_pylist()
    cands, groups = _candidates(rows)
    owners: dict[str, set[str]] = defaultdict(set)
    for doc, items in cands.items():
        for _, text in items:
            owners[text.casefold()].add(doc)
    skipped: dict[str, int] = defaultdict(int)
    usable: dict[str, list[tuple[str, str]]] = {}
    for doc, items in cands.items():
        if not groups.get(doc):
            skipped["document visible to no group"] += len(items)
            continue
        keep = []
        for kind, text in items:
            if len(owners[text.casefold()]) > 1:
                skipped["shared by several documents"] += 1
            elif _FILE_NAME.match(text):
                skipped["a file name, not a title"] += 1
            elif len(terms(text)) < 2:
                skipped["fewer than two content words"] += 1
            else:
                keep.append((kind, text))
        if keep:
            usable[doc] = keep
    # Round-robin over documents (shuffled, seeded): the set covers as many documents as it can
    # before any document gets a second entry.
    rng = random.Random(seed)
    docs = sorted(usable)
    rng.shuffle(docs)
    entries: list[dict] = []
    depth = 0
    while len(entries) < n and any(len(usable[d]) > depth for d in docs):
        for doc in docs:
            if len(entries) >= n:
                break
            if len(usable[doc]) > depth:
                kind, text = usable[doc][depth]
                digest = hashlib.sha256(f"{doc}\0{text}".encode()).hexdigest()[:12]
                entries.append({
                    "id": f"syn-{digest}", "query": text, "relevant_doc_ids": [doc],
                    "tags": [SYNTHETIC_TAG, kind], "groups": list(groups[doc]),
                    "provenance": {"source": "bootstrap", "from": kind, "index_version": version},
                })
        depth += 1
    path = Path(out) if out else state.synthetic_golden(settings.state)
    for e in entries:
        parse_golden_line(e, f"{path} (id {e['id']})")
    atomic_write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), path)
    return BootstrapResult(str(path), len(entries), len(cands), len({e["relevant_doc_ids"][0] for e in entries}),
                           dict(skipped), version)


__all__ = ["bootstrap", "BootstrapResult"]
