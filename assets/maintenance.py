"""The maintenance asset: bounded disk (``ingest_platform.maintenance``), on its own daily job.

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation by identity.
"""

import dagster as dg

from ingest_platform.maintenance import maintain
from resources import PlatformSettings

from . import metadata as m

GROUP = "maintenance"


@dg.asset(group_name=GROUP, kinds={"python", "lancedb"})
def maintenance(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """Frees what the state no longer needs: untagged index versions past the retention (tagged and
    the newest untagged ones stay), rollback tags beyond the last ``[index] keep_promoted``, cache
    rows of content that is gone (caches compacted to one segment), gate records and eval reports
    of versions that are gone, and query traces past ``[monitoring] trace_retention_days``."""
    report = maintain(platform.get())
    d = report.to_dict()
    context.log.info(f"freed {d['bytes_freed']} bytes")
    return dg.MaterializeResult(metadata={
        "bytes_freed": d["bytes_freed"], "state_bytes_before": d["bytes_before"], "state_bytes_after": d["bytes_after"],
        "index_versions_removed": d["index_versions_removed"], "index_versions_left": d["index_versions_left"],
        "rollback_tags_removed": m.text(", ".join(d["rollback_tags_removed"]) or "none"),
        "version_records_removed": d["version_records_removed"], "trace_files_removed": d["trace_files_removed"],
        "caches": m.table([{"cache": c, "rows_dropped": d["cache_rows_dropped"].get(c, 0),
                            "segments_folded": d["segments_compacted"].get(c, 0)} for c in sorted(d["segments_compacted"])],
                          [("cache", "string", ""), ("rows_dropped", "int", "rows no live document needs"),
                           ("segments_folded", "int", "segment files compacted into one")]),
        "seconds": round(d["seconds"], 3),
    })


maintenance_job = dg.define_asset_job("maintenance_job", selection=[maintenance], executor_def=dg.in_process_executor,
                                      description="Bounded disk: old index versions, stale cache rows, old traces.")


def build_maintenance_schedule(config_file=None) -> dg.ScheduleDefinition:
    from ingest_platform.config import load_settings

    m_ = load_settings(config_file).maintenance
    return dg.ScheduleDefinition(
        name="daily_maintenance", job=maintenance_job, cron_schedule=m_.cron,
        default_status=dg.DefaultScheduleStatus.RUNNING if m_.schedule_enabled else dg.DefaultScheduleStatus.STOPPED,
        description="Frees what the state no longer needs ([maintenance] cron); the run queue keeps it "
                    "from overlapping a pipeline run, and it takes the home's writer lock.")
