"""Monitoring of production queries as asset checks on ``review_queue``: warnings, never blocking.

Each check reads the query traces of the last ``[monitoring] window_days`` (``ingest_platform/
monitoring.py`` says what each measures and why) and shows its series over time as a plot.
"""

import dagster as dg

from assets.serving import now, review_queue
from ingest_platform import monitoring, state
from ingest_platform.evaluation import png_data_uri
from resources import PlatformSettings

SIGNALS = {
    "no_hit_share": "Share of answered queries with no hits, over the window, against [monitoring] max_no_hit_share.",
    "low_score_share": "Share of answered queries whose best vector candidate's cosine similarity is below "
                       "[monitoring] low_similarity, against max_low_score_share.",
    "latency_p95": "p95 latency of answered, uncached queries against [monitoring] latency_budget_ms.",
    "error_rate": "Share of queries that failed inside the platform, against [monitoring] max_error_rate "
                  "(refused bad input is reported, not counted).",
    "query_drift": "Growth, against the previous window, of the share of query terms the corpus has no word "
                   "for, against [monitoring] max_unseen_term_increase.",
}


def _check(name: str, description: str):
    @dg.asset_check(asset=review_queue, name=name, blocking=False, description=description)
    def _fn(platform: PlatformSettings) -> dg.AssetCheckResult:
        s = platform.get()
        at = now()
        signal = monitoring.evaluate(s, at)[name]
        meta: dict = {"checked_at": at.isoformat(), "window_days": s.monitoring.window_days,
                      "threshold": float(signal.threshold), "queries": signal.queries,
                      "value": float(signal.value) if signal.value is not None else "n/a"}
        meta.update({k: v for k, v in signal.details.items() if v is not None})
        if signal.series:
            plot = monitoring.plot(signal, state.monitoring_plot(s.state, name))
            meta["plot"] = dg.MetadataValue.md(f"![{name} over time]({png_data_uri(plot)})")
        return dg.AssetCheckResult(passed=signal.passed, severity=dg.AssetCheckSeverity.WARN,
                                   metadata=meta, description=signal.description)

    return _fn


MONITORING_CHECKS = [_check(name, text) for name, text in SIGNALS.items()]

production_loop_job = dg.define_asset_job(
    "production_loop_job",
    selection=dg.AssetSelection.assets(review_queue),  # its checks run with it
    description="Daily: the review sample of yesterday's production queries, and the monitoring checks "
                "over the last week of traces (warnings only).",
)


def build_review_schedule(config_file=None) -> dg.ScheduleDefinition:
    from ingest_platform.config import load_settings

    return dg.ScheduleDefinition(
        name="daily_review", job=production_loop_job, cron_schedule=load_settings(config_file).monitoring.review_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Samples yesterday's production queries for review and runs the monitoring checks "
                    "([monitoring] review_cron).",
    )
