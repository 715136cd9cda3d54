"""Freshness: how old each source's last successful scan is, and how far production lags the sources.

The core functions are pure (data and ``now`` in, verdicts out); the ``*_for`` wrappers read the
state directory. Every function takes ``now`` so tests and the Dagster checks can inject a clock.

Production lag: production serves what was promoted at its promotion time. A source change newer
than that (a manifest row's ``last_changed``; failed documents are left out, since there is nothing
to serve for them) is not served yet; production has lagged since the *oldest* such change, so the
lag is ``now - oldest unserved change`` (0 when every change is older than the promotion). Using the
oldest rather than the newest change means a source that changes every hour still trips the check
when promotions keep being blocked. A rollback serves an older version, so the promotion time used is
that of the most recent ``promote`` of the version now tagged production.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ingest_platform.config import Settings


def _hours(delta) -> float:
    return round(delta.total_seconds() / 3600.0, 4)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass
class SourceFreshness:
    source: str
    last_scan: str | None  # ISO time of the last successful scan, None if never
    age_hours: float | None
    window_hours: float
    fresh: bool

    def to_dict(self) -> dict:
        return asdict(self)


def source_freshness(sources: Sequence[str], last_scans: dict[str, datetime], now: datetime,
                     window_hours: float) -> list[SourceFreshness]:
    """Per configured source, the age of its last successful scan; never scanned is stale."""
    now = _aware(now)
    out = []
    for name in sources:
        last = last_scans.get(name)
        if last is None:
            out.append(SourceFreshness(name, None, None, window_hours, False))
            continue
        age = _hours(now - _aware(last))
        out.append(SourceFreshness(name, _aware(last).isoformat(), age, window_hours, age <= window_hours))
    return out


@dataclass
class ProductionLag:
    production_version: int | None
    promoted_at: str | None
    newest_change: str | None
    oldest_unserved_change: str | None
    unserved_changes: int  # documents changed (or deleted) after the promotion
    lag_hours: float
    window_hours: float
    fresh: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def production_lag(changes: Iterable[datetime], production_version: int | None,
                   promotions: Sequence[tuple[str, int, datetime]], now: datetime,
                   window_hours: float) -> ProductionLag:
    """``changes``: ``last_changed`` of the documents (failed ones excluded); ``promotions``:
    (action, to_version, at) in history order."""
    now = _aware(now)
    changes = sorted(_aware(c) for c in changes if c is not None)
    newest = changes[-1].isoformat() if changes else None
    promoted_at = None
    if production_version is not None:
        moves = [at for action, to, at in promotions if to == production_version and action == "promote"]
        moves = moves or [at for _, to, at in promotions if to == production_version]
        promoted_at = _aware(moves[-1]) if moves else None
    if production_version is None or promoted_at is None:
        if not changes:
            return ProductionLag(production_version, None, None, None, 0, 0.0, window_hours, True,
                                 "no documents and no production index: nothing to serve")
        lag = _hours(now - changes[0])
        return ProductionLag(production_version, None, newest, changes[0].isoformat(), len(changes), lag,
                             window_hours, lag <= window_hours,
                             "nothing has been promoted to production yet")
    unserved = [c for c in changes if c > promoted_at]
    if not unserved:
        return ProductionLag(production_version, promoted_at.isoformat(), newest, None, 0, 0.0, window_hours,
                             True, "production includes every source change")
    lag = _hours(now - unserved[0])
    return ProductionLag(production_version, promoted_at.isoformat(), newest, unserved[0].isoformat(),
                         len(unserved), lag, window_hours, lag <= window_hours,
                         f"{len(unserved)} document change(s) since production v{production_version} was promoted")


# ---- reading the state --------------------------------------------------------------------------


def source_freshness_for(settings: Settings, now: datetime | None = None) -> list[SourceFreshness]:
    from ingest_platform.pipeline import last_scans

    return source_freshness([s.name for s in settings.sources], last_scans(settings), now or datetime.now(UTC),
                            settings.freshness.max_source_scan_age_hours)


def production_lag_for(settings: Settings, now: datetime | None = None) -> ProductionLag:
    from ingest_platform import manifest as mf
    from ingest_platform.index import PRODUCTION
    from ingest_platform.pipeline import index_store

    table = mf.load_manifest(settings.state).select(["status", "last_changed"]).to_pylist()
    changes = [r["last_changed"] for r in table if r["status"] != "failed"]
    store = index_store(settings)
    promotions = [(e.action, e.to_version, datetime.fromisoformat(e.at)) for e in store.history()]
    lag = production_lag(changes, store.tags().get(PRODUCTION), promotions, now or datetime.now(UTC),
                         settings.freshness.max_index_lag_hours)
    if lag.production_version is not None:
        # The manifest forgets a deleted document after one scan, so the change times above cannot
        # show it: compare what production serves with what the sources allow now.
        from ingest_platform.promotion import exposure

        exp = exposure(settings, store, lag.production_version)
        if exp:
            lag.unserved_changes += len(exp.deleted) + len(exp.narrowed)
            lag.fresh = False
            lag.reason = f"production v{lag.production_version} still serves {exp.describe()}"
    return lag
