"""The daily review sample: production queries for a person to look at, stratified.

Reading every query does not scale and a uniform sample shows mostly the easy, frequent ones, so
the sample is drawn from four strata, in this order of precedence (a query lands in the first that
applies):

- ``no_hits``: answered with nothing (a gap in the corpus, or groups that see nothing);
- ``low_score``: the best vector candidate's cosine similarity is below ``[monitoring]
  low_similarity`` (the index had nothing close: a probable wrong answer);
- ``slow``: took longer than ``[monitoring] latency_budget_ms`` (uncached);
- ``random``: everything else, so a reviewer also sees ordinary traffic.

Each stratum gets an equal share of ``n``; a stratum with fewer queries gives its unused places to
the others. Repeats of one query (same text, same groups) count once, with how often it was asked.
The draw is seeded by the window's end date, so the asset and ``ingest-platform review`` show the
same sample for the same day.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from ingest_platform import traces
from ingest_platform.config import Settings

STRATA = ("no_hits", "low_score", "slow", "random")


@dataclass(frozen=True)
class ReviewItem:
    stratum: str
    query: str
    asked: int  # times this query (same text and groups) was asked in the window
    hits: int
    top_similarity: float | None
    latency_ms: float | None
    top_docs: str  # the first three hits' documents
    groups: str
    index_version: int | None
    trace_id: str  # the latest trace of this query: what feedback should point at
    at: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ReviewQueue:
    start: str
    end: str
    queries: int  # answered queries in the window (repeats included)
    distinct: int
    strata: dict[str, int]  # distinct queries per stratum
    items: list[ReviewItem]

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "queries": self.queries, "distinct": self.distinct,
                "strata": self.strata, "items": [i.to_json() for i in self.items]}


def stratum_of(record: dict, low_similarity: float, slow_ms: float) -> str:
    if not record.get("hit_ids"):
        return "no_hits"
    sim = record.get("top_similarity")
    if sim is not None and sim < low_similarity:
        return "low_score"
    total = (record.get("timings_ms") or {}).get("total")
    if not record.get("cached") and total is not None and total > slow_ms:
        return "slow"
    return "random"


def _allocate(n: int, sizes: dict[str, int]) -> dict[str, int]:
    """Equal shares of ``n`` over the strata, unused places handed on in stratum order."""
    quota = {s: 0 for s in STRATA}
    left = min(n, sum(sizes.values()))
    while left > 0:
        open_ = [s for s in STRATA if quota[s] < sizes.get(s, 0)]
        share = max(1, left // len(open_))
        for s in open_:
            take = min(share, sizes[s] - quota[s], left)
            quota[s] += take
            left -= take
            if left == 0:
                break
    return quota


def sample(records: list[dict], n: int, *, low_similarity: float, slow_ms: float, seed: str | int = 0
           ) -> tuple[list[ReviewItem], dict[str, int], int]:
    """The stratified sample of ``n`` distinct queries from trace ``records``; also the distinct
    count per stratum and the number of answered queries."""
    answered = [r for r in records if not r.get("error")]
    asked = Counter((" ".join(str(r.get("query", "")).split()).casefold(), tuple(r.get("groups") or ()))
                    for r in answered)
    latest: dict[tuple, dict] = {}
    for r in sorted(answered, key=lambda r: str(r.get("at", ""))):
        latest[(" ".join(str(r.get("query", "")).split()).casefold(), tuple(r.get("groups") or ()))] = r
    by_stratum: dict[str, list[tuple]] = {s: [] for s in STRATA}
    for key, r in latest.items():
        by_stratum[stratum_of(r, low_similarity, slow_ms)].append(key)
    quota = _allocate(n, {s: len(v) for s, v in by_stratum.items()})
    rng = random.Random(str(seed))
    items: list[ReviewItem] = []
    for s in STRATA:
        for key in rng.sample(sorted(by_stratum[s]), quota[s]):
            r = latest[key]
            items.append(ReviewItem(
                stratum=s, query=str(r.get("query", "")), asked=asked[key], hits=len(r.get("hit_ids") or []),
                top_similarity=r.get("top_similarity"), latency_ms=(r.get("timings_ms") or {}).get("total"),
                top_docs=", ".join(list(dict.fromkeys(r.get("hit_doc_ids") or []))[:3]),
                groups=",".join(r.get("groups") or ()), index_version=r.get("index_version"),
                trace_id=str(r.get("trace_id", "")), at=str(r.get("at", "")),
            ))
    return items, {s: len(v) for s, v in by_stratum.items()}, len(answered)


def review_queue(settings: Settings, n: int | None = None, now: datetime | None = None, days: float = 1.0
                 ) -> ReviewQueue:
    """The sample of the ``days`` before ``now`` (default: the last 24 hours)."""
    m = settings.monitoring
    end = now or traces.now()
    start = end - timedelta(days=days)
    records = traces.read(settings.state, start, end)
    items, strata, answered = sample(records, n or m.review_size, low_similarity=m.low_similarity,
                                     slow_ms=m.latency_budget_ms, seed=f"{end:%Y-%m-%d}")
    distinct = sum(strata.values())
    return ReviewQueue(start.isoformat(), end.isoformat(), answered, distinct, strata, items)


__all__ = ["ReviewItem", "ReviewQueue", "STRATA", "sample", "review_queue", "stratum_of"]
