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
from assets.index import candidate_index, embeddings, production_index
from assets.ingest import chunks, document_manifest, enriched_chunks, parsed_documents
from checks.eval_checks import eval_gate
from checks.freshness_checks import FRESHNESS_CHECKS, freshness_job, freshness_schedule
from checks.quality_checks import QUALITY_CHECKS
from resources import build_resources

ASSETS = [document_manifest, parsed_documents, chunks, enriched_chunks, embeddings, candidate_index, index_eval,
          production_index]
# The checks a pipeline run executes (freshness checks run in ``freshness_job`` between runs).
CHECKS = [*QUALITY_CHECKS, eval_gate]

index_job = dg.define_asset_job(
    "index_job",
    selection=dg.AssetSelection.assets(*ASSETS) - dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    description="The incremental pipeline end to end: scan, parse, chunk, enrich, embed, index, "
                "checks, eval, promote.",
    # One process for the whole run: the model loads once and the parser pool is reused. Steps are
    # a chain anyway; on a cluster, swap in the multiprocess/k8s executor (docs/scaling.md).
    executor_def=dg.in_process_executor,
)

source_change_sensor, hourly_reindex = build_automation(index_job, os.environ.get("INGEST_PLATFORM_CONFIG"))

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[*CHECKS, *FRESHNESS_CHECKS],
    jobs=[index_job, freshness_job],
    schedules=[hourly_reindex, freshness_schedule],
    sensors=[source_change_sensor],
    resources=build_resources(os.environ.get("INGEST_PLATFORM_CONFIG")),
)


DAGSTER_YAML = """\
# Written by ingest-platform. SQLite storage under this folder; telemetry off; one run at a time
# so embedding never competes with another run for the cores.
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


def instance_for(home: Path) -> dg.DagsterInstance:
    """A persistent Dagster instance under the state directory (run history, check results)."""
    dagster_home = Path(home).resolve() / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    cfg = dagster_home / "dagster.yaml"
    current = cfg.read_text() if cfg.exists() else None
    # Written by an older version of the platform: brought up to date. One a person wrote: kept.
    if current is None or (current != DAGSTER_YAML and current.startswith("# Written by ingest-platform")):
        cfg.write_text(DAGSTER_YAML)
    return dg.DagsterInstance.from_config(str(dagster_home))


def execute_run(*, config_file: str | None = None, home: str | None = None, overrides: dict | None = None,
                instance: dg.DagsterInstance | None = None, extra_checks: list | None = None,
                raise_on_error: bool = False) -> dg.ExecuteInProcessResult:
    """Materialize every asset and check in this process (what ``ingest-platform run`` does).
    ``overrides`` replace top-level settings for this run (``sources`` may be plain paths)."""
    from ingest_platform.config import load_settings

    settings = load_settings(config_file, home=home)
    resources = build_resources(config_file, str(settings.home), overrides)
    return dg.materialize(
        [*ASSETS, *CHECKS, *(extra_checks or [])],
        resources=resources,
        instance=instance or instance_for(settings.home),
        raise_on_error=raise_on_error,
        tags={"ingest_platform/trigger": "cli"},
    )


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
                                  tags={"ingest_platform/trigger": "cli"})
