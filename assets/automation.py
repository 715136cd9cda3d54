"""When the pipeline runs: a sensor that requests a run only when a source changed, and a schedule.

Both target ``index_job``. Which start switched on is set in ``[automation]`` (sensor on, schedule
off by default) and can be toggled in the UI.
"""

import dagster as dg

from ingest_platform.config import load_settings
from ingest_platform.shards import shard_of
from ingest_platform.watch import pending_changes
from resources import PlatformSettings

ACTIVE = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED)


def build_automation(index_job, config_file: str | None = None):
    """The sensor and schedule for ``index_job``, with default statuses from the settings."""
    auto = load_settings(config_file).automation

    @dg.sensor(
        job=index_job, minimum_interval_seconds=auto.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING if auto.sensor_enabled else dg.DefaultSensorStatus.STOPPED,
        description="Lists the sources (sizes and mtimes, hashing only what looks changed), compares them "
                    "with the manifest of the last run, and requests one run per distinct change set.",
    )
    def source_change_sensor(context: dg.SensorEvaluationContext, platform: PlatformSettings):
        # Any job: "Materialize all" in the UI runs the implicit asset job, which writes the same
        # state as index_job; a run requested beside it would only queue behind it.
        active = context.instance.get_runs(filters=dg.RunsFilter(statuses=list(ACTIVE)), limit=1)
        if active:
            return dg.SkipReason(f"run {active[0].run_id} of {active[0].job_name} is in progress")
        changes = pending_changes(platform.get())
        if changes.count == 0:
            return dg.SkipReason(f"no source changes ({changes.hashed} files re-hashed)"
                                 + (f"; {'; '.join(changes.errors)}" if changes.errors else ""))
        if context.cursor == changes.digest:
            return dg.SkipReason(f"change set {changes.digest} already requested")
        context.update_cursor(changes.digest)
        s = platform.get()
        # The shards these documents fall in: the run's shard steps are exactly these (each stage
        # plans from state, so a shard a killed earlier run left behind is finished too).
        shards = sorted({shard_of(d, s.scale.shards)
                         for d in [*changes.new, *changes.changed, *changes.deleted, *changes.retry]})
        return dg.RunRequest(
            run_key=changes.digest,
            tags={"ingest_platform/trigger": "sensor", "ingest_platform/new": str(len(changes.new)),
                  "ingest_platform/changed": str(len(changes.changed)),
                  "ingest_platform/deleted": str(len(changes.deleted)),
                  "ingest_platform/retry": str(len(changes.retry)),
                  "ingest_platform/shards": ", ".join(shards[:32]) + (" ..." if len(shards) > 32 else "")},
        )

    schedule = dg.ScheduleDefinition(
        name="hourly_reindex", job=index_job, cron_schedule=auto.schedule_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING if auto.schedule_enabled else dg.DefaultScheduleStatus.STOPPED,
        description="Runs the incremental pipeline on a cron ([automation] schedule_cron); a run with "
                    "nothing changed writes no new index version.",
    )
    return source_change_sensor, schedule
