"""A semantic result cache: a query close enough in meaning to a cached one gets its answer.

The exact-match cache only helps when users type the same string; people rephrase ("refund window
annual plan" / "annual plan refund window?"). Here a query whose embedding has a cosine similarity
of at least ``threshold`` with a cached query's embedding, asked in the same scope (index version,
k, mode, caller groups and filters: the answer must be one this caller could get), returns the
cached answer. The threshold trades hit rate for quality: two questions can be close in embedding
space and still want different documents (a negation, another product's number), so
``benchmarks/semantic_cache.py`` reports both the hit rate on paraphrases and the nDCG@10 lost on
queries that hit another query's answer. Off by default (``[query] semantic_cache_threshold``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np


class SemanticCache:
    """Answers by scope; inside a scope a matrix of unit query vectors, searched by one product."""

    def __init__(self, threshold: float, size: int = 1024):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.size = max(1, int(size))
        self._scopes: dict[tuple, tuple[list[np.ndarray], list[tuple[str, Any]]]] = {}
        self._order: OrderedDict[tuple, None] = OrderedDict()  # (scope, text) oldest first
        self._lock = threading.Lock()

    def get(self, scope: tuple, vector: np.ndarray) -> tuple[Any, str, float] | None:
        """(cached answer, the query it answered, similarity) of the closest cached query in
        ``scope`` when it is within the threshold; else None."""
        with self._lock:
            entry = self._scopes.get(scope)
            if not entry or not entry[0]:
                return None
            sims = np.einsum("ij,j->i", np.stack(entry[0]), vector)  # on this thread (query._MemoryVectors.search)
            best = int(np.argmax(sims))
            if sims[best] < self.threshold:
                return None
            text, answer = entry[1][best]
            return answer, text, float(sims[best])

    def put(self, scope: tuple, text: str, vector: np.ndarray, answer: Any) -> None:
        with self._lock:
            vectors, answers = self._scopes.setdefault(scope, ([], []))
            if (scope, text) in self._order:
                return
            vectors.append(np.asarray(vector, dtype=np.float32))
            answers.append((text, answer))
            self._order[(scope, text)] = None
            while len(self._order) > self.size:
                (old_scope, old_text), _ = self._order.popitem(last=False)
                vs, ans = self._scopes[old_scope]
                i = next(i for i, (t, _) in enumerate(ans) if t == old_text)
                del vs[i], ans[i]
                if not ans:
                    del self._scopes[old_scope]

    def __len__(self) -> int:
        return len(self._order)


__all__ = ["SemanticCache"]
