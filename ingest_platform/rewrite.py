"""Query rewriting before retrieval: a pluggable callable, and a built-in glossary that needs no model.

A rewriter is any ``f(query) -> str | Rewrite``: a returned string replaces the query on both sides;
a ``Rewrite`` sets the vector side and the keyword side separately. A serving app passes one backed
by its own model (``Retriever(rewriter=...)``); the platform ships ``GlossaryRewriter``.

``GlossaryRewriter`` reads a synonyms file in the format search engines use (Solr's
``synonyms.txt``, also read by Elasticsearch and OpenSearch), one rule a line:

    # equivalent terms: any one found adds the others
    refund, money back, reimbursement
    # one-way: the left side found adds the right side
    P1 => priority 1, critical
    PTO => paid time off, annual leave

Matching is case-insensitive on whole words (multi-word terms as a sequence of words). Only the
keyword (BM25) side is expanded: BM25 has no notion that "money back" means "refund", while the
embedding model already places them near each other, and extra words would pull the query vector
off the user's meaning. The original words stay in the keyword query, so an expansion can add
matches but never lose the exact-term ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rewrite:
    """The text each side of hybrid search uses."""

    vector: str
    keyword: str


# What a serving app may pass as ``Retriever(rewriter=...)``.
QueryRewriter = Callable[[str], "str | Rewrite"]


class GlossaryError(ValueError):
    """A glossary file that cannot be read; the message names the file and line."""


def _pattern(term: str) -> re.Pattern:
    words = term.split()
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)


class GlossaryRewriter:
    """Expands the keyword side of a query with the synonyms of the glossary terms it contains."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise GlossaryError(f"glossary {self.path} does not exist ([query] glossary)")
        # (pattern of a term, the terms it adds)
        self.rules: list[tuple[re.Pattern, tuple[str, ...]]] = []
        for lineno, raw in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{self.path}:{lineno}"
            if "=>" in line:
                left, _, right = line.partition("=>")
                sources, targets = _terms(left, where), _terms(right, where)
                for s in sources:
                    self.rules.append((_pattern(s), tuple(t for t in targets if t.casefold() != s.casefold())))
            else:
                group = _terms(line, where)
                if len(group) < 2:
                    raise GlossaryError(f"{where}: a line of equivalent terms needs at least two, comma-separated")
                for s in group:
                    self.rules.append((_pattern(s), tuple(t for t in group if t != s)))
        if not self.rules:
            raise GlossaryError(f"glossary {self.path} has no rules")

    def expansions(self, query: str) -> list[str]:
        """The terms the query's glossary terms add, in rule order, each once, none already in it."""
        out: list[str] = []
        for pattern, adds in self.rules:
            if pattern.search(query):
                for term in adds:
                    if term not in out and not _pattern(term).search(query):
                        out.append(term)
        return out

    def __call__(self, query: str) -> Rewrite:
        extra = self.expansions(query)
        return Rewrite(vector=query, keyword=f"{query} {' '.join(extra)}" if extra else query)


def _terms(text: str, where: str) -> list[str]:
    terms = [" ".join(t.split()) for t in text.split(",")]
    if any(not t for t in terms):
        raise GlossaryError(f"{where}: empty term (a stray comma?)")
    return terms


def apply(rewriter: QueryRewriter | None, query: str) -> Rewrite | None:
    """The rewriter's output as a ``Rewrite``; None when there is no rewriter or nothing changed."""
    if rewriter is None:
        return None
    out = rewriter(query)
    if isinstance(out, str):
        out = Rewrite(out, out)
    if not isinstance(out, Rewrite):
        raise TypeError(f"a query rewriter must return str or Rewrite, not {type(out).__name__}")
    if not out.vector.strip() or not out.keyword.strip():
        return None  # a rewriter that erased the query is ignored rather than answering nothing
    return None if (out.vector, out.keyword) == (query, query) else out


__all__ = ["Rewrite", "QueryRewriter", "GlossaryRewriter", "GlossaryError", "apply"]
