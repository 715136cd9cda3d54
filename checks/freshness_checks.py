"""Freshness checks: per source, the age of its last successful scan; for production, how far it
lags the newest source changes. They run in ``freshness_job`` on a schedule between pipeline runs
(``FreshnessPolicy`` only reports; these checks fail visibly).

The clock is ``datetime.now(UTC)`` unless ``INGEST_PLATFORM_NOW`` holds an ISO 8601 time (tests, or
replaying a past state).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import dagster as dg

from assets import metadata as m
from assets.index import production_index
from assets.ingest import document_manifest
from ingest_platform import freshness
from resources import PlatformSettings

CLOCK_ENV = "INGEST_PLATFORM_NOW"


def now() -> datetime:
    value = os.environ.get(CLOCK_ENV)
    if not value:
        return datetime.now(UTC)
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dg.asset_check(asset=document_manifest, description="Every configured source was scanned successfully "
                "within [freshness] max_source_scan_age_hours.")
def source_scan_age(platform: PlatformSettings) -> dg.AssetCheckResult:
    s = platform.get()
    at = now()
    rows = freshness.source_freshness_for(s, at)
    stale = [r.source for r in rows if not r.fresh]
    ages = [r.age_hours for r in rows if r.age_hours is not None]
    return dg.AssetCheckResult(
        passed=not stale,
        metadata={
            "checked_at": at.isoformat(), "window_hours": s.freshness.max_source_scan_age_hours,
            "sources": len(rows), "stale_sources": ", ".join(stale) or "none",
            "max_age_hours": max(ages) if ages else -1.0,
            "per_source": m.inferred([r.to_dict() for r in rows]),
        },
        description=(f"stale or never scanned: {', '.join(stale)}" if stale else
                     "no sources configured" if not rows else "every source scanned within the window"),
    )


@dg.asset_check(asset=production_index, description="Production includes every source change older "
                "than [freshness] max_index_lag_hours.")
def production_lag(platform: PlatformSettings) -> dg.AssetCheckResult:
    s = platform.get()
    at = now()
    lag = freshness.production_lag_for(s, at)
    meta = {k: v for k, v in lag.to_dict().items() if v is not None and k != "fresh"}
    return dg.AssetCheckResult(
        passed=lag.fresh, metadata={"checked_at": at.isoformat(), **meta},
        description=f"{lag.reason}; lag {lag.lag_hours:.2f} h (window {lag.window_hours:g} h)",
    )


FRESHNESS_CHECKS = [source_scan_age, production_lag]

freshness_job = dg.define_asset_job(
    "freshness_job",
    selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    description="Freshness checks only (no asset is materialized): source scan age, production lag.",
)

# Hourly at half past, between pipeline runs.
freshness_schedule = dg.ScheduleDefinition(
    name="freshness_schedule", job=freshness_job, cron_schedule="30 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
