"""The Dagster layer: definitions load, assets materialize on a temporary instance, and a failing
blocking check stops promotion."""

from __future__ import annotations

import logging
import multiprocessing

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
        assert node.group_name in {"ingest", "index", "serving", "maintenance"} and node.description, key
    assert defs.resolve_job_def("index_job")


def materializations(result) -> dict:
    return {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()}


def table_rows(value) -> list[dict]:
    return [r.data for r in value.records]


def test_materialize_builds_checks_and_promotes(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    with dg.instance_for_test() as instance:
        result = execute_run(config_file=str(cfg), instance=instance)
        assert result.success
        assert result.job_def.name == "index_job"  # the CLI runs the job the UI and the sensor run
        mats = materializations(result)
        assert mats["document_manifest"].metadata["documents_new"].value == 4
        changes = table_rows(mats["document_manifest"].metadata["changes"].value)
        assert {(c["document"], c["status"]) for c in changes} == {(f"docs:{p}", "new") for p in SMALL_CORPUS}
        assert mats["candidate_index"].metadata["new_version_written"].value is True
        assert mats["production_index"].metadata["promoted"].value is True
        # Documents smaller than the minimum chunk size are one chunk each, not fragments: the
        # dashboard counts them apart, so "chunks under the minimum" means fragments only.
        chunks = pipeline.chunk_table(s).read_all(["doc_id", "token_count"]).to_pylist()
        sizes = {d: sum(c["token_count"] for c in chunks if c["doc_id"] == d) for d in {c["doc_id"] for c in chunks}}
        small = [d for d, n in sizes.items() if n < s.chunking.min_tokens]
        assert small and all(sum(c["doc_id"] == d for c in chunks) == 1 for d in small)
        assert mats["chunks"].metadata["documents_under_min_tokens"].value == len(small)
        assert mats["chunks"].metadata["chunks_under_min_tokens"].value == 0
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks["index_quality"] is True and checks["documents_failed"] is True
        store = pipeline.index_store(s)
        assert store.tags()["production"] == store.tags()["candidate"]

        # Nothing changed: a no-op that says so and adds nothing to any asset's history.
        again = execute_run(config_file=str(cfg), instance=instance)
        assert again.success and materializations(again) == {}
        assert not list(again.get_asset_check_evaluations())
        (obs,) = [e.event_specific_data.asset_observation for e in again.all_events
                  if e.event_type_value == "ASSET_OBSERVATION"]
        assert obs.metadata["outcome"].value.startswith(f"no-op: nothing changed since run {result.run_id}")
        assert instance.get_run_by_id(again.run_id).tags["ingest_platform/outcome"] == "no-op: nothing changed"
        assert len(instance.fetch_materializations(dg.AssetKey("embeddings"), limit=10).records) == 1


def test_changed_and_failed_documents_are_named(tmp_path):
    """One file edited, one broken file added: the run names both, logs the failure at WARNING,
    the non-blocking check warns (the run still succeeds and promotes), and the counts agree."""
    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root)
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(cfg), instance=instance).success
        write(root, "support/hours.txt", SMALL_CORPUS["support/hours.txt"] + "\nSaturday support opens at 10:00.\n")
        write(root, "broken.pdf", b"%PDF-1.4 this is not really a pdf")

        # Children this process had before the run (e.g. an earlier test's run_all parser pool,
        # which lives until exit by design) are not the run's.
        before = {p.pid for p in multiprocessing.active_children()}

        @dg.asset_check(asset=definitions.embeddings, name="no_parser_workers_left")
        def no_parser_workers_left() -> dg.AssetCheckResult:
            # Runs after embedding, in the run's process: the parse fan-in stopped the workers.
            alive = [p.pid for p in multiprocessing.active_children() if p.pid not in before]
            return dg.AssetCheckResult(passed=not alive, metadata={"alive": str(alive)})

        result = execute_run(config_file=str(cfg), instance=instance, extra_checks=[no_parser_workers_left])
        assert result.success
        (workers,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "no_parser_workers_left"]
        assert workers.passed, workers.metadata
        mats = materializations(result)
        changes = {c["document"]: c for c in table_rows(mats["document_manifest"].metadata["changes"].value)}
        assert set(changes) == {"docs:support/hours.txt", "docs:broken.pdf"}
        edited = changes["docs:support/hours.txt"]
        assert edited["status"] == "changed" and edited["size_bytes_after"] > edited["size_bytes_before"]
        assert edited["hash_before"] != edited["hash_after"] and edited["reason"] == "content changed"
        tag = instance.get_run_by_id(result.run_id).tags["ingest_platform/changes"]
        assert "changed: docs:support/hours.txt" in tag and "docs:broken.pdf" in tag
        index_changes = {c["document"]: c for c in table_rows(mats["candidate_index"].metadata["changes"].value)}
        assert set(index_changes) == {"docs:support/hours.txt"}  # the broken file never reached the index
        hours = index_changes["docs:support/hours.txt"]
        assert hours["status"] == "changed" and hours["chunks_added"] >= 1 and hours["chunks_removed"] >= 1

        warnings = [e.message for e in instance.all_logs(result.run_id)
                    if e.level == logging.WARNING and "docs:broken.pdf" in e.message]
        assert warnings and "failed: docs:broken.pdf: " in warnings[0]
        (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "documents_failed"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert "1 of 5 documents could not be indexed" in check.description
        failures = table_rows(mats["parsed_documents"].metadata["failures"].value)
        assert [f["document"] for f in failures] == ["docs:broken.pdf"] and failures[0]["reason"]
        assert mats["parsed_documents"].metadata["documents_failed"].value == 1
        assert mats["production_index"].metadata["promoted"].value is True

        # The edit reverted: the scan already knows the broken file failed, so the counts agree.
        write(root, "support/hours.txt", SMALL_CORPUS["support/hours.txt"])
        third = execute_run(config_file=str(cfg), instance=instance)
        mats = materializations(third)
        assert mats["document_manifest"].metadata["documents_failed_before_parsing"].value == 1
        assert mats["parsed_documents"].metadata["documents_failed"].value == 1
        assert [c["document"] for c in table_rows(mats["document_manifest"].metadata["changes"].value)] == [
            "docs:support/hours.txt"]


def test_platform_progress_reaches_the_run_log(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    instance = definitions.instance_for(s.home)
    result = execute_run(config_file=str(cfg), instance=instance)
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    # One progress line set per shard step (the documents fall into several shards), with a rate.
    assert any(m.startswith("parsing: ") and "docs/s" in m for m in messages), messages
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


def _two_releases(tmp_path, instance):
    """A corpus promoted twice through Dagster runs (the second adds a torch page): what a rollback
    needs. Returns the source folder, settings, config file and the first production version."""
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    assert execute_run(config_file=str(cfg), instance=instance).success
    v1 = pipeline.index_store(s).version_of("production")
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    assert execute_run(config_file=str(cfg), instance=instance).success
    return root, s, cfg, v1


def test_a_rollback_handed_to_a_run_that_a_check_stops_is_carried_out_when_it_ends(tmp_path):
    """The run's promotion step, one place that carries out a rollback handed to it, is skipped when
    a blocking check fails; the rollback asked for meanwhile is carried out as the run ends."""
    from ingest_platform import promotion

    from .test_cli import cli

    with dg.instance_for_test() as instance:
        root, s, cfg, v1 = _two_releases(tmp_path, instance)
        store = pipeline.index_store(s)

        @dg.asset_check(asset=definitions.candidate_index, blocking=True, name="fails_after_a_rollback_is_asked")
        def fails_after_a_rollback_is_asked() -> dg.AssetCheckResult:
            asked = cli("rollback", "--config", str(cfg), "--reason", "bad torch", "--wait", "0")
            assert asked.returncode == 4 and "handed to it" in asked.stderr, asked.stderr
            return dg.AssetCheckResult(passed=False)

        write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 60 metres.\n")
        result = execute_run(config_file=str(cfg), instance=instance, extra_checks=[fails_after_a_rollback_is_asked])
        assert not result.success
        assert promotion.rollback_request(s)["status"] == "applied"
        assert store.version_of("production") == v1 and store.history()[-1].action == "rollback"


def test_promotion_refuses_versions_without_passing_gates(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    pipeline.run_all(s, promote=False)
    v = pipeline.index_store(s).version_of("candidate")
    import pytest

    from ingest_platform import promotion

    with pytest.raises(gates.GateError, match="no verdict recorded: embeddings_quality, index_quality"):
        promotion.promote(s, v, why="unchecked")
    gates.record(s.state, v, "index_quality", True)
    gates.record(s.state, v, "embeddings_quality", True)
    gates.record(s.state, v, "eval_gate", False)
    with pytest.raises(gates.GateError, match="failed: eval_gate"):
        promotion.promote(s, v, why="failed eval")


def test_the_asset_chain_follows_the_one_list_of_stages():
    """``ingest_platform.stages`` is the order run_all runs; the asset graph must agree with it:
    no stage's asset depends on a later stage's, and every one depends on the scan."""
    from ingest_platform.stages import STAGES

    graph = definitions.defs.get_repository_def().asset_graph

    def ancestors(key: dg.AssetKey) -> set[dg.AssetKey]:
        out, todo = set(), [key]
        while todo:
            for parent in graph.get(todo.pop()).parent_keys:
                if parent not in out:
                    out.add(parent)
                    todo.append(parent)
        return out

    keys = [dg.AssetKey(stage.asset) for stage in STAGES]
    for i, key in enumerate(keys):
        assert not ancestors(key) & set(keys[i + 1:]), key
        if i:
            assert keys[0] in ancestors(key), key


def test_a_failing_shard_is_named_and_the_others_keep_their_work(tmp_path):
    """Two documents change, in two shards; one shard's chunk file is corrupt, so its step fails.
    The run fails with that step named (``chunk_shard[shard_NNN]``), the other shard's chunks are
    written, nothing is promoted; with the bad file gone the next run finishes the job."""
    from ingest_platform.shards import shard_of

    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    cfg = write_config(tmp_path, root)
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(cfg), instance=instance).success
        production = pipeline.index_store(s).version_of("production")
        n = s.scale.shards
        bad, good = "policies/refund.md", "products/lanterns.md"
        bad_shard, good_shard = shard_of(f"docs:{bad}", n), shard_of(f"docs:{good}", n)
        assert bad_shard != good_shard
        write(root, bad, SMALL_CORPUS[bad].replace("30 days", "45 days"))
        write(root, good, SMALL_CORPUS[good].replace("1200 lumens", "1500 lumens"))
        chunks = pipeline.chunk_table(s)
        chunks.path(bad_shard).write_bytes(b"not a parquet file")

        result = execute_run(config_file=str(cfg), instance=instance)
        assert not result.success
        failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
        assert failed == {f"chunks.chunk_shard[shard_{bad_shard}]"}, failed
        kept = chunks.read(good_shard).to_pylist()
        assert any("1500 lumens" in r["text"] for r in kept)  # the other shard's work is written
        assert pipeline.index_store(s).version_of("production") == production

        chunks.path(bad_shard).unlink()
        again = execute_run(config_file=str(cfg), instance=instance)
        assert again.success
        hit = Retriever(settings=s, trace=False).search("refund window annual plans", 1).hits[0]
        assert "45 days" in hit.text


def test_a_run_with_another_shard_count_lays_every_stage_out_again(tmp_path):
    """Changing ``[scale] shards`` between Dagster runs: each stage re-lays out the folder it
    writes before the next stage reads it by the new shard keys (``shards.ShardedTable``), so the
    run succeeds and production serves every document, a changed one in its new version."""
    root = make_corpus(tmp_path / "src")
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(write_config(tmp_path, root, extra="[scale]\nshards = 4")),
                           instance=instance).success
        served = pipeline.index_store(make_settings(tmp_path, root)).checkout("production").count_rows()
        write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "45 days"))
        result = execute_run(config_file=str(write_config(tmp_path, root, extra="[scale]\nshards = 2")), instance=instance)
        assert result.success
        s = make_settings(tmp_path, root, scale={"shards": 2})
        assert set(pipeline.indexable_table(s).written()) <= {"000", "001"}
        assert pipeline.index_store(s).checkout("production").count_rows() == served
        hit = Retriever(settings=s, trace=False).search("refund window annual plans", 1).hits[0]
        assert "45 days" in hit.text


def test_runs_after_a_rollback_succeed_and_say_promotion_is_held(tmp_path):
    """After an operator's rollback, runs build and check candidates but promote none until an
    operator promotes (``promotion.rolled_back``). That is the state the operator chose, not a
    failure: every scheduled run failing red would page people and hide real failures. The step
    succeeds, says why nothing was promoted, and the operator's promotion ends the hold."""
    from ingest_platform import promotion

    with dg.instance_for_test() as instance:
        root, s, cfg, v1 = _two_releases(tmp_path, instance)
        store = pipeline.index_store(s)
        back = promotion.rollback(s, why="bad torch", who="ops")
        assert back.to_version == v1

        write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 60 metres.\n")
        held = execute_run(config_file=str(cfg), instance=instance)
        assert held.success
        meta = materializations(held)["production_index"].metadata
        assert meta["promoted"].value is False and "rolled back" in meta["reason"].value and "bad torch" in meta["reason"].value
        assert store.version_of("production") == back.to_version != store.version_of("candidate")

        promotion.promote(s, "candidate", why="torch fixed", who="ops")
        write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 70 metres.\n")
        resumed = execute_run(config_file=str(cfg), instance=instance)
        assert resumed.success and materializations(resumed)["production_index"].metadata["promoted"].value is True
        assert store.version_of("production") == store.version_of("candidate")
