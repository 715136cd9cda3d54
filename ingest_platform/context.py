"""Packing search hits into a model's context window: a token budget, merged chunks, citations.

Why not just concatenate the top k chunks: neighbouring chunks of one section repeat each other's
boundary sentences (the chunker's overlap), the same paragraph can sit in several documents, and a
fixed k either wastes the budget or overflows it. ``pack`` walks the hits best first and

1. drops a chunk whose text is already in the context (exactly, or inside a longer passage), noting
   its citation on the passage that holds it (``also_in``);
2. merges a chunk with a passage of the same document when one ends with what the other starts
   with (the chunker's overlap), so the shared sentences appear once;
3. adds passages, each headed by a numbered citation, while they fit in ``max_tokens`` counted with
   the tokenizer given (by default the embedding model's own); a passage that does not fit is cut at
   a word boundary when enough room is left, else skipped for a shorter one further down.

The final text is counted again as a whole, so ``count([text]) <= max_tokens`` holds for any
tokenizer, not only for ones where counts add up across concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest_platform.models import DEFAULT_MODEL

# f(texts) -> token count of each text.
TokenCounter = Callable[[Sequence[str]], list[int]]
# Below this many tokens of room a cut passage says too little to be worth its header.
MIN_CUT_TOKENS = 32
_MIN_OVERLAP_CHARS = 20


@dataclass
class Passage:
    """One numbered source in the context: one chunk, or overlapping chunks of one document merged."""

    n: int
    doc_id: str
    text: str
    citation: Any  # query.Citation of the best chunk; pages widened to the merged chunks'
    chunk_ids: list[str]
    score: float
    tokens: int = 0
    truncated: bool = False
    also_in: list[str] = field(default_factory=list)  # other documents holding the same text

    @property
    def header(self) -> str:
        c = self.citation
        where = c.title or ""
        if c.heading_path and c.heading_path != c.title:
            where = f"{where} › {c.heading_path}" if where else c.heading_path
        pages = ""
        if c.page:
            pages = f", p. {c.page}" + (f"-{c.page_end}" if c.page_end and c.page_end != c.page else "")
        # The doc id (SOURCE:PATH) is short and unique; the full URI is in ``citation``.
        return f"[{self.n}] {self.doc_id}" + (f" · {where}" if where else "") + pages

    def block(self, text: str | None = None) -> str:
        return f"{self.header}\n{self.text if text is None else text}"

    def to_json(self) -> dict:
        c = self.citation
        return {"n": self.n, "doc_id": self.doc_id, "text": self.text, "tokens": self.tokens,
                "truncated": self.truncated, "score": self.score, "chunk_ids": self.chunk_ids,
                "also_in": self.also_in, "source_uri": c.source_uri, "title": c.title,
                "heading_path": c.heading_path, "page": c.page, "page_end": c.page_end}


@dataclass
class Context:
    """What ``Retriever.context`` returns: ``text`` is what to put in the prompt."""

    query: str
    text: str
    passages: list[Passage]
    tokens: int
    max_tokens: int
    trace_id: str
    index_version: int
    hits: int  # hits retrieved
    merged: int  # chunks merged into another passage (overlap) or dropped as duplicates
    left_out: int  # passages that did not fit

    def to_json(self) -> dict:
        return {"query": self.query, "trace_id": self.trace_id, "index_version": self.index_version,
                "tokens": self.tokens, "max_tokens": self.max_tokens, "hits": self.hits, "merged": self.merged,
                "left_out": self.left_out, "text": self.text, "passages": [p.to_json() for p in self.passages]}


def tokenizer_counter(model_spec: str = DEFAULT_MODEL) -> TokenCounter:
    """Counts in the embedding model's own tokenizer (no special tokens)."""
    from ingest_platform.chunking import count_tokens
    from ingest_platform.models import load_tokenizer

    tokenizer = load_tokenizer(model_spec)
    return lambda texts: count_tokens(tokenizer, list(texts))


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def merge_overlap(a: str, b: str) -> str | None:
    """``a`` followed by ``b`` with the text they share written once, when ``a`` ends with what
    ``b`` starts with (at least 20 characters); else None."""
    head = b[:_MIN_OVERLAP_CHARS]
    if len(head) < _MIN_OVERLAP_CHARS:
        return None
    pos = a.find(head)
    while pos != -1:
        if b.startswith(a[pos:]):
            return a + b[len(a) - pos:]
        pos = a.find(head, pos + 1)
    return None


def _widen(citation, other):
    """The citation with its page range widened to cover ``other``'s."""
    pages = [p for p in (citation.page, citation.page_end, other.page, other.page_end) if p]
    if not pages:
        return citation
    return type(citation)(citation.source_uri, citation.title, citation.heading_path, min(pages), max(pages))


def passages_from(hits: Sequence[Any]) -> tuple[list[Passage], int]:
    """Hits (best first) as passages: duplicates dropped, overlapping chunks of a document merged.
    Returns the passages (best first) and how many chunks were merged or dropped."""
    out: list[Passage] = []
    folded = 0
    for hit in hits:
        norm = _norm(hit.text)
        if not norm:
            folded += 1
            continue
        holder = next((p for p in out if norm in _norm(p.text)), None)
        if holder is not None:
            folded += 1
            if hit.doc_id != holder.doc_id and hit.doc_id not in holder.also_in:
                holder.also_in.append(hit.doc_id)
            elif hit.doc_id == holder.doc_id:
                holder.chunk_ids.append(hit.chunk_id)
            continue
        merged = False
        for p in out:
            if p.doc_id != hit.doc_id:
                continue
            joined = merge_overlap(p.text, hit.text) or merge_overlap(hit.text, p.text)
            if joined is not None:
                p.text, merged = joined, True
                p.chunk_ids.append(hit.chunk_id)
                p.citation = _widen(p.citation, hit.citation)
                folded += 1
                break
        if not merged:
            out.append(Passage(0, hit.doc_id, hit.text, hit.citation, [hit.chunk_id], hit.score))
        else:
            folded += _close(out)
    return out, folded


def _close(out: list[Passage]) -> int:
    """Merge passages of one document that a merge made overlap (chunks 1 and 3 are bridged once
    chunk 2 joins one of them); returns how many passages were folded away."""
    folded, changed = 0, True
    while changed:
        changed = False
        for i, a in enumerate(out):
            for b in out[i + 1:]:
                if a.doc_id != b.doc_id:
                    continue
                joined = merge_overlap(a.text, b.text) or merge_overlap(b.text, a.text)
                if joined is None and _norm(b.text) in _norm(a.text):
                    joined = a.text
                if joined is not None:
                    a.text, a.citation = joined, _widen(a.citation, b.citation)
                    a.chunk_ids.extend(b.chunk_ids)
                    out.remove(b)
                    folded, changed = folded + 1, True
                    break
            if changed:
                break
    return folded


def _cut(passage: Passage, room: int, count: TokenCounter) -> str | None:
    """The longest word-boundary prefix of the passage whose block fits in ``room`` tokens."""
    words = passage.text.split(" ")
    lo, hi, best = 1, len(words) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        text = " ".join(words[:mid]) + " …"
        if count([passage.block(text)])[0] <= room:
            best, lo = text, mid + 1
        else:
            hi = mid - 1
    return best


def pack(result, max_tokens: int, count: TokenCounter) -> Context:
    """``result`` (a ``SearchResult``) packed into ``max_tokens`` tokens; see the module docstring."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        from ingest_platform.query import QueryError

        raise QueryError(f"max_tokens must be a positive integer (got {max_tokens!r})")
    candidates, folded = passages_from(result.hits)
    chosen: list[Passage] = []
    used = 0
    sep = 2  # "\n\n" between blocks: counted generously, then the whole text is re-counted
    left_out = 0
    for p in candidates:
        p.n = len(chosen) + 1
        room = max_tokens - used - (sep if chosen else 0)
        need = count([p.block()])[0]
        if need <= room:
            chosen.append(p)
            used += need + (sep if len(chosen) > 1 else 0)
            continue
        if room >= MIN_CUT_TOKENS and (cut := _cut(p, room, count)) is not None:
            p.text, p.truncated = cut, True
            chosen.append(p)
            used += count([p.block()])[0] + (sep if len(chosen) > 1 else 0)
            left_out += len(candidates) - candidates.index(p) - 1
            break
        left_out += 1
    text = "\n\n".join(p.block() for p in chosen)
    total = count([text])[0] if text else 0
    while chosen and total > max_tokens:  # a tokenizer whose counts do not add up: drop from the end
        chosen.pop()
        left_out += 1
        text = "\n\n".join(p.block() for p in chosen)
        total = count([text])[0] if text else 0
    for p in chosen:
        p.tokens = count([p.block()])[0]
    return Context(result.query, text, chosen, total, max_tokens, result.trace_id, result.index_version,
                   len(result.hits), folded, left_out)


__all__ = ["Context", "Passage", "TokenCounter", "pack", "passages_from", "merge_overlap", "tokenizer_counter"]
