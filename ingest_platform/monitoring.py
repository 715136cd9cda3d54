"""Monitoring of production queries from their traces: the numbers behind the (warning) checks.

Over the last ``[monitoring] window_days`` (a week by default), from ``<home>/traces``:

- ``no_hit_share``: answered queries that returned nothing;
- ``low_score_share``: answered queries whose best vector candidate is less similar than
  ``low_similarity`` (keyword-only queries have no such signal and are left out);
- ``latency_p95``: p95 of ``timings_ms.total`` of answered, uncached queries, against
  ``latency_budget_ms``;
- ``error_rate``: queries that failed inside the platform (refused bad input is reported beside it,
  not counted: a client sending empty queries is not an outage);
- ``query_drift``: how much the share of query terms the corpus has no word for grew against the
  previous window.

Why that drift measure: what hurts retrieval is users asking about things the index cannot match,
and a query term absent from every chunk (title and headings included) cannot match on the keyword
side and is usually out of the embedding's reach too. The share is a proportion over term
occurrences, so it is stable at a few hundred queries a week, where divergences between weekly
term distributions (e.g. Jensen-Shannon) are dominated by sampling noise; it needs no model in the
check (a centroid distance of query embeddings would, and says nothing about which topics moved);
and its evidence is a list of the new unseen terms, which says what to add to the corpus or to the
query glossary. Topic shifts within the corpus's vocabulary are not flagged: the index covers them.

Each signal also gets a series over time (daily values over the last four windows; weekly for
drift), which the checks plot.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest_platform import state, traces
from ingest_platform.config import Settings
from ingest_platform.storage import atomic_write_text

_WORD = re.compile(r"\w+")
# Function words carry no topic; leaving them out keeps the unseen-term share about content.
STOPWORDS = frozenset("""a an and are as at be been but by can could did do does for from had has have how i
if in into is it its may me might my no not of on or our should so than that the their them then there
these they this to was we were what when where which who whom why will with would you your""".split())


def terms(text: str) -> list[str]:
    """Content terms of a text: lower-cased word characters, stop words and single letters dropped."""
    return [t for t in _WORD.findall(text.casefold()) if len(t) > 1 and t not in STOPWORDS]


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    i = (len(xs) - 1) * p / 100
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


@dataclass
class Signal:
    """One monitored quantity over the window, judged against its threshold."""

    name: str
    value: float | None
    threshold: float
    passed: bool
    queries: int
    description: str
    unit: str = "share"
    series: list[tuple[str, float | None]] = field(default_factory=list)
    details: dict = field(default_factory=dict)


# ---- the measures -------------------------------------------------------------------------------


def _answered(records: list[dict]) -> list[dict]:
    return [r for r in records if not r.get("error")]


def no_hit_share(records: list[dict]) -> float | None:
    answered = _answered(records)
    return sum(1 for r in answered if not r.get("hit_ids")) / len(answered) if answered else None


def low_score_share(records: list[dict], low: float) -> float | None:
    scored = [r for r in _answered(records) if r.get("top_similarity") is not None]
    return sum(1 for r in scored if r["top_similarity"] < low) / len(scored) if scored else None


def latency_p95(records: list[dict]) -> float | None:
    return percentile([float(r["timings_ms"]["total"]) for r in _answered(records)
                       if not r.get("cached") and (r.get("timings_ms") or {}).get("total") is not None], 95)


def error_rate(records: list[dict]) -> float | None:
    return sum(1 for r in records if r.get("error_kind") == "failed") / len(records) if records else None


def unseen_terms(records: list[dict], vocabulary: set[str]) -> tuple[float | None, Counter]:
    """Share of the answered queries' term occurrences absent from ``vocabulary``, and those terms."""
    counts: Counter = Counter()
    total = 0
    for r in _answered(records):
        for t in terms(str(r.get("query", ""))):
            total += 1
            if t not in vocabulary:
                counts[t] += 1
    return (sum(counts.values()) / total if total else None), counts


def corpus_vocabulary(settings: Settings) -> tuple[set[str], int | None]:
    """Every term of the production version's chunks (text, titles, headings), cached per version
    under ``<home>/monitoring``; empty when there is no production index."""
    from ingest_platform.index import PRODUCTION, IndexStore

    store = IndexStore(settings.lancedb_uri, settings.index.table, home=settings.state)
    version = store.tags().get(PRODUCTION) if store.exists() else None
    if version is None:
        return set(), None
    cache = state.monitoring_vocabulary(settings.state, version)
    if cache.exists():
        return set(cache.read_text(encoding="utf-8").split("\n")) - {""}, version
    table = store.checkout(version)
    vocab: set[str] = set()
    data = table.search().select(["text", "title", "heading_path"]).limit(None).to_arrow()
    for column in ("text", "title", "heading_path"):
        for value in data.column(column).to_pylist():
            if value:
                vocab.update(_WORD.findall(value.casefold()))
    # One temporary file per writer: two processes filling the cache at once must not share one.
    atomic_write_text("\n".join(sorted(vocab)), cache)
    return vocab, version


# ---- the report the checks read -----------------------------------------------------------------


def _daily(records: list[dict], start: datetime, days: int, fn) -> list[tuple[str, float | None]]:
    by_day: dict[str, list[dict]] = {}
    for r in records:
        at = traces.at_of(r)
        if at is not None:
            by_day.setdefault(f"{at:%Y-%m-%d}", []).append(r)
    out = []
    for i in range(days):
        day = f"{start + timedelta(days=i):%Y-%m-%d}"
        out.append((day, fn(by_day[day]) if day in by_day else None))
    return out


def evaluate(settings: Settings, now: datetime | None = None) -> dict[str, Signal]:
    """Every signal over the window ending at ``now``."""
    m = settings.monitoring
    now = now or traces.now()
    window = timedelta(days=m.window_days)
    history_start = now - 4 * window
    records = traces.read(settings.state, history_start - window, now)
    current = [r for r in records if (at := traces.at_of(r)) is not None and at >= now - window]
    previous = [r for r in records if (at := traces.at_of(r)) is not None and now - 2 * window <= at < now - window]
    older = [r for r in records if (at := traces.at_of(r)) is not None and at >= history_start]
    n = len(current)
    answered = len(_answered(current))
    quiet = n < m.min_queries
    first_day = (now - 4 * window).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    days = 4 * m.window_days

    def judge(name, value, threshold, what, fn, unit="share", count=answered, details=None) -> Signal:
        if quiet:
            passed, text = True, f"not enough traffic: {n} queries in {m.window_days} days (< {m.min_queries})"
        elif value is None:
            passed, text = True, f"nothing to measure for {what}"
        else:
            passed = value <= threshold + 1e-12
            shown = f"{value:.1f} ms" if unit == "ms" else f"{value:.1%}"
            limit = f"{threshold:.1f} ms" if unit == "ms" else f"{threshold:.1%}"
            text = f"{what}: {shown} over the last {m.window_days} days ({'within' if passed else 'above'} {limit})"
        return Signal(name, value, threshold, passed, count, text, unit,
                      _daily(older, first_day, days, fn) if fn else [], details or {})

    signals = {
        "no_hit_share": judge("no_hit_share", no_hit_share(current), m.max_no_hit_share,
                              "queries with no hits", no_hit_share),
        "low_score_share": judge("low_score_share", low_score_share(current, m.low_similarity),
                                 m.max_low_score_share, f"queries whose best match has similarity < {m.low_similarity}",
                                 lambda rs: low_score_share(rs, m.low_similarity)),
        "latency_p95": judge("latency_p95", latency_p95(current), m.latency_budget_ms, "p95 latency",
                             latency_p95, unit="ms"),
        "error_rate": judge("error_rate", error_rate(current), m.max_error_rate, "queries that failed",
                            error_rate, count=n,
                            details={"refused_share": (sum(1 for r in current if r.get("error_kind") == "refused") / n)
                                     if n else None}),
    }
    signals["query_drift"] = drift(settings, records, now, window, quiet, n)
    return signals


def drift(settings: Settings, records: list[dict], now: datetime, window: timedelta, quiet: bool, n: int) -> Signal:
    m = settings.monitoring
    vocabulary, version = corpus_vocabulary(settings)
    weeks = []
    for i in range(4, -1, -1):  # five windows, oldest first; the last is the current one
        lo, hi = now - (i + 1) * window, now - i * window
        part = [r for r in records if (at := traces.at_of(r)) is not None and lo <= at < hi]
        share, unseen = unseen_terms(part, vocabulary) if vocabulary else (None, Counter())
        weeks.append((f"{lo:%Y-%m-%d}", share, unseen, len(part)))
    (_, prev, prev_unseen, prev_n), (_, cur, cur_unseen, _) = weeks[-2], weeks[-1]
    series = [(label, None if share is None or weeks[i - 1][1] is None else share - weeks[i - 1][1])
              for i, (label, share, _, _) in enumerate(weeks) if i > 0]
    new_terms = [t for t, _ in cur_unseen.most_common() if t not in prev_unseen][:10]
    details = {"unseen_share": cur, "previous_unseen_share": prev, "index_version": version,
               "new_unseen_terms": ", ".join(new_terms) or "none",
               "top_unseen_terms": ", ".join(f"{t} ({c})" for t, c in cur_unseen.most_common(10)) or "none"}
    if not vocabulary:
        return Signal("query_drift", None, m.max_unseen_term_increase, True, n,
                      "no production index: drift is not measured", "share", series, details)
    if quiet or prev_n < m.min_queries or cur is None or prev is None:
        return Signal("query_drift", None, m.max_unseen_term_increase, True, n,
                      f"not enough traffic to compare windows ({n} now, {prev_n} before; need {m.min_queries})",
                      "share", series, details)
    value = cur - prev
    passed = value <= m.max_unseen_term_increase + 1e-12
    text = (f"query terms the corpus has no word for: {cur:.1%} of terms this window vs {prev:.1%} the window before "
            f"({value:+.1%}; {'within' if passed else 'above'} +{m.max_unseen_term_increase:.0%})"
            + (f"; new: {', '.join(new_terms[:5])}" if new_terms else ""))
    return Signal("query_drift", value, m.max_unseen_term_increase, passed, n, text, "share", series, details)


# ---- plots --------------------------------------------------------------------------------------


def plot(signal: Signal, path: str | Path) -> Path:
    """A small PNG of the signal's series with its threshold."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 2.6), dpi=100)
    ax = fig.subplots()
    labels = [label for label, _ in signal.series]
    ys = [float("nan") if v is None or (isinstance(v, float) and math.isnan(v)) else v for _, v in signal.series]
    xs = list(range(len(labels)))
    ax.plot(xs, ys, marker="o", markersize=3, label=signal.name)
    ax.axhline(signal.threshold, color="tab:orange", linestyle="--", linewidth=1, label="threshold")
    step = max(1, len(labels) // 7)
    ax.set_xticks(xs[::step], [label[5:] for label in labels[::step]], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{signal.name} ({'ms' if signal.unit == 'ms' else 'share'}) over time", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


__all__ = ["Signal", "evaluate", "plot", "terms", "corpus_vocabulary", "no_hit_share", "low_score_share",
           "latency_p95", "error_rate", "unseen_terms", "percentile"]
