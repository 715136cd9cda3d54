"""The source-change sensor and the schedule: one run per real change, none otherwise."""

import os
import time

import dagster as dg
import pytest

import definitions
from definitions import execute_run
from ingest_platform.watch import pending_changes
from resources import build_resources

from .conftest import make_corpus, make_settings, write, write_config


def evaluate(sensor, instance, cfg, cursor=None):
    platform = build_resources(str(cfg))["platform"]
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"platform": platform}) as ctx:
        result = sensor.evaluate_tick(ctx)
        return result, ctx.cursor


def test_pending_changes_hashes_only_what_looks_changed(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    assert len(pending_changes(s).new) == 4  # nothing indexed yet
    from ingest_platform import pipeline

    pipeline.scan(s)
    none = pending_changes(s)
    assert none.count == 0 and none.hashed == 0
    target = root / "support" / "hours.txt"
    os.utime(target, (target.stat().st_atime, target.stat().st_mtime + 10))  # touched, same bytes
    touched = pending_changes(s)
    assert touched.count == 0 and touched.hashed == 1
    write(root, "support/hours.txt", "Support hours changed.")
    (root / "hr" / "leave.md").unlink()
    write(root, "new.md", "# New\n\nnew text")
    changes = pending_changes(s)
    assert (changes.new, changes.changed, changes.deleted) == (
        ["docs:new.md"], ["docs:support/hours.txt"], ["docs:hr/leave.md"])


def test_sensor_requests_exactly_one_run_per_change(tmp_path):
    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root)
    sensor = definitions.source_change_sensor
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(cfg), instance=instance).success
        result, cursor = evaluate(sensor, instance, cfg)
        assert not result.run_requests and "no source changes" in result.skip_message

        write(root, "support/returns.md", "# Returns\n\nReturn labels are emailed within two days.\n")
        result, cursor = evaluate(sensor, instance, cfg, cursor)
        (request,) = result.run_requests
        assert request.tags["ingest_platform/new"] == "1"
        # Evaluated again before the run happened: the same change set is not requested twice.
        again, cursor2 = evaluate(sensor, instance, cfg, cursor)
        assert not again.run_requests and cursor2 == cursor

        assert execute_run(config_file=str(cfg), instance=instance).success
        after, _ = evaluate(sensor, instance, cfg, cursor)
        assert not after.run_requests and "no source changes" in after.skip_message


@pytest.mark.slow
def test_sensor_requests_the_run_that_retries_a_crashed_parse(tmp_path, monkeypatch):
    """A parse that lost its worker is tried again on the next run (``[parsing] attempts``); with
    the schedule off (the default) nothing else would start that run, as no file changed."""
    from ingest_platform import faults

    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root, extra="[parsing]\nretry_after_s = 0")  # due at once
    sensor = definitions.source_change_sensor
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(cfg), instance=instance).success
        write(root, "support/returns.md", "# Returns\n\nReturn labels are emailed within two days.\n")
        monkeypatch.setenv(faults.ENV, "parse:worker")  # the run's parser workers die
        assert execute_run(config_file=str(cfg), instance=instance).success  # failures warn, not block
        monkeypatch.delenv(faults.ENV)
        time.sleep(1)  # due times are whole seconds, rounded up
        result, cursor = evaluate(sensor, instance, cfg)
        (request,) = result.run_requests
        assert request.tags["ingest_platform/retry"] == "1" and request.tags["ingest_platform/new"] == "0"
        again, _ = evaluate(sensor, instance, cfg, cursor)
        assert not again.run_requests
        assert execute_run(config_file=str(cfg), instance=instance).success
        after, _ = evaluate(sensor, instance, cfg, cursor)
        assert not after.run_requests and "no source changes" in after.skip_message


def test_sensor_skips_while_a_run_is_in_progress(tmp_path):
    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root)
    with dg.instance_for_test() as instance:
        job = definitions.defs.resolve_job_def("index_job")
        run = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
        result, _ = evaluate(definitions.source_change_sensor, instance, cfg)
        assert not result.run_requests and "in progress" in result.skip_message
        # "Materialize all" on the lineage page runs the implicit asset job: the guard sees it too.
        instance.report_run_canceled(run)
        lineage = definitions.defs.get_repository_def().get_implicit_global_asset_job_def()
        instance.create_run_for_job(lineage, status=dg.DagsterRunStatus.STARTED)
        result, _ = evaluate(definitions.source_change_sensor, instance, cfg)
        assert not result.run_requests and f"of {lineage.name} is in progress" in result.skip_message


def test_the_lineage_button_runs_like_index_job():
    """The UI's "Materialize all" runs the implicit asset job: with the same executor as index_job
    (in one process, the model loaded once), not Dagster's one-process-per-step default."""
    repo = definitions.defs.get_repository_def()
    lineage = repo.get_implicit_global_asset_job_def()
    assert lineage.executor_def.name == repo.get_job("index_job").executor_def.name == "in_process"


def test_automation_defaults_are_documented_choices():
    sensor = definitions.source_change_sensor
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert definitions.hourly_reindex.default_status == dg.DefaultScheduleStatus.STOPPED
    assert definitions.hourly_reindex.cron_schedule == "0 * * * *"
    assert definitions.hourly_reindex.job_name == "index_job"
