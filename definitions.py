"""The one Dagster ``Definitions`` of ingest-platform, and the in-process runner the CLI uses.

``dagster dev -w workspace.yaml`` loads ``defs`` from here. Resources read ``ingest-platform.toml``
(or ``INGEST_PLATFORM_CONFIG``) and the environment, like the CLI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from assets.automation import build_automation
from assets.evaluation import index_eval
from assets.index import candidate_index, embeddings, production_index, production_revocations
from assets.ingest import chunks, document_manifest, enriched_chunks, parsed_documents
from assets.maintenance import build_maintenance_schedule, maintenance, maintenance_job
from assets.serving import review_queue
from checks.document_checks import DOCUMENT_CHECKS
from checks.eval_checks import eval_gate
from checks.freshness_checks import FRESHNESS_CHECKS, freshness_job, freshness_schedule
from checks.guardrail_checks import GUARDRAIL_CHECKS
from checks.monitoring_checks import MONITORING_CHECKS, build_review_schedule, production_loop_job
from checks.quality_checks import QUALITY_CHECKS
from checks.safety_checks import SAFETY_CHECKS
from ingest_platform import state
from ingest_platform.config import load_settings
from resources import build_resources


@dg.success_hook(name="record_complete_run", required_resource_keys={"platform"})
def record_complete_run(context: dg.HookContext) -> None:
    """The run got through promotion: remember the state it left, so the next run over the same
    state is a no-op that materializes nothing (``ingest_platform.completion``)."""
    from ingest_platform import completion

    completion.record_complete(context.resources.platform.get(), context.run_id)


ASSETS = [document_manifest, production_revocations, parsed_documents, chunks, enriched_chunks, embeddings,
          candidate_index, index_eval, production_index.with_hooks({record_complete_run})]
# The checks a pipeline run executes (freshness checks run in ``freshness_job`` between runs).
CHECKS = [*QUALITY_CHECKS, *DOCUMENT_CHECKS, *SAFETY_CHECKS, *GUARDRAIL_CHECKS, eval_gate]
# The production loop (review sample + monitoring checks over query traces): its own daily job,
# never part of a pipeline run.
SERVING_ASSETS = [review_queue]

def build_executor(settings) -> dg.ExecutorDefinition:
    """``index_job``'s executor, from ``[dagster] executor``: Dagster's own (in-process,
    multiprocess), dagster-celery's or dagster-k8s' (imported only when chosen)."""
    d = settings.dagster
    if d.executor == "in_process":
        return dg.in_process_executor
    if d.executor == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": d.max_concurrent or os.cpu_count() or 1})
    if d.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured({"broker": d.celery_broker, "backend": d.celery_backend,
                                           "config_source": {"task_default_queue": d.celery_queue}})
    from dagster_k8s import k8s_job_executor  # installed in the deployment's image (deploy/README.md)

    return k8s_job_executor


_SETTINGS = load_settings(os.environ.get("INGEST_PLATFORM_CONFIG"))

index_job = dg.define_asset_job(
    "index_job",
    selection=dg.AssetSelection.assets(*ASSETS) - dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    description="The incremental pipeline end to end: scan, parse, chunk, enrich, embed, index, "
                "checks, eval, promote.",
    # [dagster] executor: in-process by default (the model loads once); multiprocess, Celery or
    # Kubernetes run each step, every shard step too, in a process of its own (docs/scaling.md).
    executor_def=build_executor(_SETTINGS),
)

source_change_sensor, hourly_reindex = build_automation(index_job, os.environ.get("INGEST_PLATFORM_CONFIG"))

daily_review = build_review_schedule(os.environ.get("INGEST_PLATFORM_CONFIG"))
daily_maintenance = build_maintenance_schedule(os.environ.get("INGEST_PLATFORM_CONFIG"))

defs = dg.Definitions(
    assets=[*ASSETS, *SERVING_ASSETS, maintenance],
    asset_checks=[*CHECKS, *FRESHNESS_CHECKS, *MONITORING_CHECKS],
    jobs=[index_job, freshness_job, production_loop_job, maintenance_job],
    schedules=[hourly_reindex, freshness_schedule, daily_review, daily_maintenance],
    sensors=[source_change_sensor],
    resources=build_resources(os.environ.get("INGEST_PLATFORM_CONFIG")),
    # The UI's "Materialize all" (and any asset selection) runs the implicit asset job; with the
    # multiprocess default it took one process per step, each loading the model: 2:55 for a no-op
    # that index_job does in 0:16. The same executor as index_job, so every button is the same run.
    executor=build_executor(_SETTINGS),
)


def index_job_for_execution() -> dg.JobDefinition:
    """``index_job`` resolved, for executors that run steps in other processes: they rebuild it from
    this module by name (``execute_job`` with a reconstructable job)."""
    return defs.resolve_job_def("index_job")


DAGSTER_YAML = """\
# Written by ingest-platform. Storage: SQLite under this folder unless [dagster] storage names a
# PostgreSQL database; telemetry off; one run at a time so embedding never competes with another
# run for the cores.
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
# The platform's own log lines (progress of parsing and embedding, stage summaries) go to the
# run's event log, so the UI shows them beside Dagster's.
python_logs:
  python_log_level: INFO
  managed_python_loggers:
    - ingest_platform
"""


def dagster_yaml(settings=None) -> str:
    """The instance's ``dagster.yaml``: ``DAGSTER_YAML``, plus PostgreSQL storage when
    ``[dagster] storage`` names a database (the psycopg2 driver dagster-postgres is built on)."""
    storage = settings.dagster.storage if settings is not None else "sqlite"
    if storage == "sqlite":
        return DAGSTER_YAML
    url = storage.replace("postgres://", "postgresql://", 1).replace("postgresql://", "postgresql+psycopg2://", 1)
    return DAGSTER_YAML + f"storage:\n  postgres:\n    postgres_url: {json.dumps(url)}\n"


def instance_for(home: Path, settings=None) -> dg.DagsterInstance:
    """A persistent Dagster instance under the state directory (run history, check results), its
    storage as ``[dagster] storage`` says."""
    from ingest_platform.locking import file_lock
    from ingest_platform.storage import atomic_write_text

    wanted = dagster_yaml(settings)
    dagster_home = state.dagster_home(Path(home).resolve() if state.is_local(home) else home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    cfg = dagster_home / "dagster.yaml"
    # Two processes creating the SQLite storage at once once left it with two schema heads for
    # good: creation (and migration) happens under a lock, one process at a time.
    with file_lock(dagster_home / ".create.lock"):
        current = cfg.read_text() if cfg.exists() else None
        # Written by an older version of the platform: brought up to date. One a person wrote: kept.
        if current is None or (current != wanted and current.startswith("# Written by ingest-platform")):
            atomic_write_text(wanted, cfg)
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        instance.get_runs(limit=1)  # opens (and creates) the run storage now, under the lock
        return instance


# The code location ``workspace.yaml`` loads (its name is the file name). Runs started in this
# process carry the tag the UI files a location's runs under, so a CLI run is listed on
# ``index_job``'s page beside the runs launched from the UI, the sensor and the schedule.
LOCATION_NAME = "definitions.py"
RUN_ORIGIN_TAGS = {".dagster/repository": f"__repository__@{LOCATION_NAME}"}


def execute_run(*, config_file: str | None = None, home: str | None = None, overrides: dict | None = None,
                instance: dg.DagsterInstance | None = None, extra_checks: list | None = None,
                raise_on_error: bool = False, lock_wait_s: float = 0.0) -> dg.ExecuteInProcessResult:
    """Run ``index_job`` in this process (what ``ingest-platform run`` does): the same job, with the
    same assets and checks, that the UI, the sensor and the schedule launch, so the CLI's runs are
    listed on the job's page in the UI. ``overrides`` replace top-level settings for this run
    (``sources`` may be plain paths); ``extra_checks`` (tests) join the job's checks. Holds the
    home's writer lock for the whole run (``HomeLocked`` if another writer has it and does not
    finish within ``lock_wait_s``)."""
    from ingest_platform.config import load_settings
    from ingest_platform.locking import writer_lock

    settings = load_settings(config_file, home=home, **_plain_overrides(overrides))
    if settings.dagster.executor != "in_process":
        return _execute_elsewhere(settings, config_file, overrides, instance or instance_for(settings.home, settings),
                                  raise_on_error)
    with writer_lock(settings.home, what="run", wait_s=lock_wait_s):
        job = dg.Definitions(
            assets=ASSETS, asset_checks=[*CHECKS, *FRESHNESS_CHECKS, *(extra_checks or [])], jobs=[index_job],
            resources=build_resources(config_file, str(settings.home), overrides), executor=dg.in_process_executor,
        ).resolve_job_def(index_job.name)
        try:
            return job.execute_in_process(
                instance=instance or instance_for(settings.home, settings), raise_on_error=raise_on_error,
                tags={"ingest_platform/trigger": "cli", **RUN_ORIGIN_TAGS},
            )
        finally:
            # A rollback handed to this run is carried out before the lock goes, also when a
            # blocking check stopped the run before ``production_index``.
            from ingest_platform import promotion

            promotion.apply_requested_rollback(settings)


def _plain_overrides(overrides: dict | None) -> dict:
    """The overrides as settings values (``sources`` given as paths become source configs)."""
    from ingest_platform.sources import sources_from_paths

    out = dict(overrides or {})
    if out.get("sources") and isinstance(out["sources"][0], str):
        out["sources"] = [s.model_dump() for s in sources_from_paths(out["sources"])]
    return out


def _execute_elsewhere(settings, config_file, overrides, instance, raise_on_error):
    """``index_job`` on the configured multiprocess, Celery or Kubernetes executor: steps run in
    other processes, which rebuild the job from this module and read the settings from the
    environment (the config file, the home and any overrides are passed there). Each step that
    writes the index takes the home's writer lock itself."""
    from dagster._core.definitions.reconstruct import ReconstructableJob

    env = {"INGEST_PLATFORM_HOME": str(settings.home)}
    if config_file:
        env["INGEST_PLATFORM_CONFIG"] = str(Path(config_file).resolve())
    for key, value in _plain_overrides(overrides).items():
        env[f"INGEST_PLATFORM_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        recon = ReconstructableJob.for_file(str(Path(__file__).resolve()), "index_job_for_execution")
        result = dg.execute_job(recon, instance=instance, raise_on_error=raise_on_error,
                                tags={"ingest_platform/trigger": "cli", **RUN_ORIGIN_TAGS})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return result


def execute_freshness(*, config_file: str | None = None, home: str | None = None,
                      instance: dg.DagsterInstance | None = None, raise_on_error: bool = False) -> dg.ExecuteInProcessResult:
    """Run ``freshness_job`` (the freshness checks only) in this process."""
    from ingest_platform.config import load_settings

    settings = load_settings(config_file, home=home)
    job = dg.Definitions(
        assets=ASSETS, asset_checks=FRESHNESS_CHECKS, jobs=[freshness_job],
        resources=build_resources(config_file, str(settings.home)),
    ).resolve_job_def("freshness_job")
    return job.execute_in_process(instance=instance or instance_for(settings.home), raise_on_error=raise_on_error,
                                  tags={"ingest_platform/trigger": "cli", **RUN_ORIGIN_TAGS})


def execute_review(*, config_file: str | None = None, home: str | None = None,
                   instance: dg.DagsterInstance | None = None, raise_on_error: bool = False) -> dg.ExecuteInProcessResult:
    """Run ``production_loop_job`` (the review sample and the monitoring checks) in this process."""
    from ingest_platform.config import load_settings

    settings = load_settings(config_file, home=home)
    return dg.materialize(
        [*SERVING_ASSETS, *MONITORING_CHECKS], resources=build_resources(config_file, str(settings.home)),
        instance=instance or instance_for(settings.home), raise_on_error=raise_on_error,
        tags={"ingest_platform/trigger": "cli", **RUN_ORIGIN_TAGS},
    )
