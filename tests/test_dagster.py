"""The Dagster layer: definitions load, assets materialize on a temporary instance, and a failing
blocking check stops promotion."""

from __future__ import annotations

import dagster as dg

import definitions
from definitions import execute_run
from ingest_platform import gates, pipeline
from ingest_platform.query import Retriever

from .conftest import SMALL_CORPUS, make_corpus, make_settings, write, write_config


def test_definitions_load_with_groups_and_descriptions():
    defs = definitions.defs
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"document_manifest", "parsed_documents", "chunks", "enriched_chunks", "embeddings",
            "candidate_index", "production_index"} <= keys
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        assert node.group_name in {"ingest", "index"} and node.description, key
    assert defs.resolve_job_def("index_job")


def test_materialize_builds_checks_and_promotes(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    with dg.instance_for_test() as instance:
        result = execute_run(config_file=str(cfg), instance=instance)
        assert result.success
        mats = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
                for e in result.get_asset_materialization_events()}
        assert mats["document_manifest"].metadata["status/new"].value == 4
        assert mats["candidate_index"].metadata["new_version_written"].value is True
        assert mats["production_index"].metadata["promoted"].value is True
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks["index_quality"] is True
        store = pipeline.index_store(s)
        assert store.tags()["production"] == store.tags()["candidate"]

        again = execute_run(config_file=str(cfg), instance=instance)
        mats = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
                for e in again.get_asset_materialization_events()}
        assert mats["parsed_documents"].metadata["parsed"].value == 0
        assert mats["embeddings"].metadata["embedded"].value == 0
        assert mats["candidate_index"].metadata["new_version_written"].value is False


def test_platform_progress_reaches_the_run_log(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    instance = definitions.instance_for(s.home)
    result = execute_run(config_file=str(cfg), instance=instance)
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(m.startswith("parsing: 4/4") for m in messages), messages
    assert any(m.startswith("embedding: ") for m in messages)


def test_instance_config_is_updated_when_ours_and_kept_when_not(tmp_path):
    cfg = tmp_path / "dagster" / "dagster.yaml"
    cfg.parent.mkdir()
    cfg.write_text("# Written by ingest-platform. An older version.\ntelemetry:\n  enabled: false\n")
    definitions.instance_for(tmp_path)
    assert cfg.read_text() == definitions.DAGSTER_YAML
    cfg.write_text("telemetry:\n  enabled: false\n")  # a file someone wrote
    definitions.instance_for(tmp_path)
    assert cfg.read_text() == "telemetry:\n  enabled: false\n"


def test_failing_blocking_check_stops_promotion(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(cfg), instance=instance).success
        production = pipeline.index_store(s).version_of("production")

        @dg.asset_check(asset=definitions.candidate_index, blocking=True, name="always_fails")
        def always_fails() -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=False, metadata={"why": "test"})

        write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "90 days"))
        result = execute_run(config_file=str(cfg), instance=instance,
                             extra_checks=[always_fails])
        assert not result.success
        store = pipeline.index_store(s)
        assert store.version_of("candidate") != production
        assert store.version_of("production") == production  # the tag did not move
        hit = Retriever(settings=s).search("refund window annual plan", 1).hits[0]
        assert "30 days" in hit.text
        # The promotion step was skipped, not failed, and no event claims a promotion.
        promoted = [e for e in result.get_asset_materialization_events()
                    if e.event_specific_data.materialization.asset_key.to_user_string() == "production_index"]
        assert not promoted


def test_promotion_refuses_versions_without_passing_gates(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    pipeline.run_all(s, promote=False)
    v = pipeline.index_store(s).version_of("candidate")
    import pytest

    with pytest.raises(gates.GateError, match="no recorded quality gates"):
        gates.require_passed(s.state, v)
    gates.record(s.state, v, "index_quality", True)
    gates.record(s.state, v, "eval_gate", False)
    with pytest.raises(gates.GateError, match="eval_gate"):
        gates.require_passed(s.state, v)
