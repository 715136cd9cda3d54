"""The production loop on a real index and real Dagster runs: review sample, monitoring checks over
traces (a synthetic bad week turns them yellow), golden growth from feedback gating a candidate,
and a synthetic starter golden set (issue 16)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from definitions import execute_review
from ingest_platform import evaluation, pipeline, traces
from ingest_platform.config import load_settings
from ingest_platform.golden import add_feedback, production_file
from ingest_platform.golden_bootstrap import bootstrap
from ingest_platform.query import Retriever
from ingest_platform.review import STRATA, stratum_of

from .conftest import make_corpus, write, write_config

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    root = make_corpus(tmp / "src")
    cfg = write_config(tmp, root, extra="[monitoring]\nmin_queries = 10\n")
    s = load_settings(cfg)
    pipeline.run_all(s)
    return cfg, s, root


# ---- review -------------------------------------------------------------------------------------


def test_review_sample_is_stratified_and_the_cli_shows_the_asset_s_sample(built, monkeypatch, capsys):
    cfg, s, _ = built
    s = s.model_copy(update={"monitoring": s.monitoring.model_copy(update={"latency_budget_ms": 0.001})})
    r = Retriever(settings=s)
    r.search("refund window for annual plans", 3)
    r.search("refund window for annual plans", 3)  # its latest answer is cached: ordinary traffic
    r.search("Zephyr K7 lumens", 3)  # slower than the (tiny) budget
    r.search("refund window", 3, groups=["nobody"])  # no hits
    r.search("qzx vbnmk plorf", 3)  # nothing similar
    monkeypatch.setenv(traces.CLOCK_ENV, (datetime.now(UTC) + timedelta(minutes=1)).isoformat())

    from ingest_platform.review import review_queue

    queue = review_queue(s, n=4)
    assert queue.queries == 5 and queue.distinct == 4
    assert {i.stratum for i in queue.items} == set(STRATA) and len(queue.items) == 4
    by = {i.stratum: i for i in queue.items}
    assert by["no_hits"].hits == 0 and by["no_hits"].groups == "nobody"
    assert by["low_score"].query == "qzx vbnmk plorf" and by["low_score"].top_similarity < s.monitoring.low_similarity
    assert by["random"].asked == 2 and by["slow"].query == "Zephyr K7 lumens"
    for item in queue.items:  # each item's trace is the one the stratum was judged on
        assert stratum_of(traces.find(s.state, item.trace_id), s.monitoring.low_similarity, 0.001) == item.stratum

    # The Dagster asset and the CLI draw the same sample (same window, same seed).
    monkeypatch.setenv("INGEST_PLATFORM_CONFIG", str(cfg))
    monkeypatch.setenv("INGEST_PLATFORM_MONITORING__LATENCY_BUDGET_MS", "0.001")
    with dg.instance_for_test() as instance:
        result = execute_review(config_file=str(cfg), instance=instance)
    assert result.success
    (mat,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    table = mat.metadata["sample"]
    assert isinstance(table, dg.TableMetadataValue)
    asset_ids = [rec.data["trace_id"] for rec in table.records]

    from ingest_platform.cli import main

    capsys.readouterr()
    assert main(["review", "--config", str(cfg), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert [i["trace_id"] for i in cli["items"]] == asset_ids and len(asset_ids) == 4


# ---- monitoring ---------------------------------------------------------------------------------


def _week(home, start: datetime, n: int, *, bad: bool) -> None:
    """``n`` synthetic traces over 7 days from ``start``; a bad week has no-hit, low-score, slow,
    failing queries about things the corpus has no word for."""
    for i in range(n):
        at = start + timedelta(hours=i * 7 * 24 / n)
        rec = {"trace_id": traces.new_trace_id(at), "at": at.isoformat(), "mode": "hybrid", "k": 5,
               "groups": ["public"], "index_version": 1, "cached": False, "error": None,
               "query": ["refund window annual plans", "lantern lumens", "support phone hours"][i % 3],
               "hit_ids": ["c1", "c2"], "hit_doc_ids": ["docs:a", "docs:b"], "top_similarity": 0.6,
               "timings_ms": {"total": 20.0 + i % 5}}
        if bad:
            rec["query"] = ["quantum blockchain synergy", "kubernetes helm chart", "refund window"][i % 3]
            if i % 3 == 0:
                rec["hit_ids"], rec["hit_doc_ids"] = [], []
            if i % 2 == 0:
                rec["top_similarity"] = 0.1
            rec["timings_ms"] = {"total": 250.0}
            if i % 5 == 0:
                rec.update(error="RuntimeError: lance dataset unavailable", error_kind="failed", hit_ids=[])
        traces.append(home, rec)


def test_monitoring_checks_turn_yellow_on_a_bad_week_and_stay_green_on_a_good_one(built, monkeypatch, tmp_path):
    cfg, s, root = built
    # A home of its own (same index) so the other tests' real traces do not mix in.
    home = tmp_path / "state"
    import shutil

    shutil.copytree(s.state / "lancedb", home / "lancedb")  # the index and its tags
    cfg2 = write_config(tmp_path, root, extra="[monitoring]\nmin_queries = 10\n")
    _week(home, NOW - timedelta(days=14), 60, bad=False)
    _week(home, NOW - timedelta(days=7), 60, bad=False)
    monkeypatch.setenv(traces.CLOCK_ENV, NOW.isoformat())
    with dg.instance_for_test() as instance:
        good = execute_review(config_file=str(cfg2), instance=instance)
        assert good.success
        checks = {c.check_name: c for c in good.get_asset_check_evaluations()}
        assert set(checks) == {"no_hit_share", "low_score_share", "latency_p95", "error_rate", "query_drift"}
        assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}

        _week(home, NOW, 60, bad=True)  # the week that follows goes wrong on every count
        later = NOW + timedelta(days=7)
        monkeypatch.setenv(traces.CLOCK_ENV, later.isoformat())
        bad = execute_review(config_file=str(cfg2), instance=instance)
        assert bad.success  # warnings never fail the run
        checks = {c.check_name: c for c in bad.get_asset_check_evaluations()}
        for name, check in checks.items():
            assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN, name
            plot = check.metadata["plot"].value
            assert plot.startswith("![") and "data:image/png;base64," in plot
        assert "quantum" in checks["query_drift"].metadata["new_unseen_terms"].value
        assert checks["latency_p95"].metadata["value"].value == pytest.approx(250.0)
        assert checks["error_rate"].metadata["value"].value == pytest.approx(12 / 60)


# ---- golden growth and the gate -----------------------------------------------------------------


def test_feedback_becomes_production_golden_entries_that_gate_a_candidate(built, tmp_path, monkeypatch):
    _, s, _ = built
    root = make_corpus(tmp_path / "src")
    s = load_settings(write_config(tmp_path, root))
    curated = write(tmp_path, "golden.jsonl", json.dumps({
        "id": "c1", "query": "refund window for annual plans", "relevant_doc_ids": ["docs:policies/refund.md"]}) + "\n")
    # k=1: with four documents any answer is in a top 10; at 1 a candidate can lose one.
    s = s.model_copy(update={"eval": s.eval.model_copy(update={"golden_file": str(curated), "k": 1})})
    pipeline.run_all(s)
    r = Retriever(settings=s)
    monkeypatch.setenv("INGEST_PLATFORM_JUDGE", "carol")
    lumens = r.search("how bright is the Zephyr K7", 3)
    r.feedback(lumens.trace_id, doc_id="docs:products/lanterns.md", relevant=True)
    again = r.search("How bright is the  Zephyr K7", 3)  # the same query, asked again: one entry
    r.feedback(again.trace_id, doc_id="docs:support/hours.txt", relevant=False, judge="dave")
    dup = r.search("refund window for annual plans", 3)  # already curated: skipped
    r.feedback(dup.trace_id, doc_id="docs:policies/refund.md", relevant=True)
    only_no = r.search("phone support", 3)  # nothing judged relevant: skipped
    r.feedback(only_no.trace_id, doc_id="docs:policies/refund.md", relevant=False)

    res = add_feedback(s)
    assert (res.added, res.updated, res.entries) == (1, 0, 1)
    assert sorted(x["reason"] for x in res.skipped) == ["already in the curated golden set",
                                                        "no document judged relevant"]
    (entry,) = [json.loads(line) for line in production_file(s).read_text().splitlines()]
    assert entry["tags"] == ["production"] and entry["relevant_doc_ids"] == ["docs:products/lanterns.md"]
    assert entry["grades"] == {"docs:products/lanterns.md": 1, "docs:support/hours.txt": 0}
    prov = entry["provenance"]
    assert prov["judges"] == ["carol", "dave"] and set(prov["trace_ids"]) == {lumens.trace_id, again.trace_id}
    assert prov["first_judged"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert add_feedback(s).unchanged == 1  # idempotent: no duplicate on a re-run

    # The gate scores both sets; a candidate that loses the production-derived answer fails it,
    # although the curated set is untouched. (An edit, not a deletion: a deletion leaves
    # production at once, whatever the gate says.)
    write(root, "products/lanterns.md", "# Stock list\n\nThe warehouse keeps spare cables and boxes.\n")
    pipeline.run_all(s, promote=False)
    payload = evaluation.cli_payload(s, ref="candidate")
    assert set(payload["per_set"]) == {"curated", "production"}
    assert payload["per_set"]["curated"]["recall_at_k"] == 1.0
    assert payload["production"]["per_set"]["production"]["recall_at_k"] == 1.0
    assert payload["per_set"]["production"]["recall_at_k"] == 0.0
    assert not payload["verdict"]["passed"]
    assert any(reason.startswith("production set: recall@1 fell") for reason in payload["verdict"]["reasons"])
    assert "production" in payload["per_tag"]


def test_bootstrap_writes_a_synthetic_set_that_gates_a_corpus_without_one(built, tmp_path, capsys):
    cfg, s, _ = built
    out = tmp_path / "starter.jsonl"
    from ingest_platform.cli import main

    capsys.readouterr()
    assert main(["golden", "bootstrap", "--config", str(cfg), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    entries = evaluation.load_golden(out)
    assert summary["entries"] == len(entries) > 0 and summary["covered"] >= 3
    for e in entries:
        assert "synthetic" in e.tags and len(e.relevant_doc_ids) == 1 and e.groups
    queries = {e.query for e in entries}
    # Headings of sections too short to be chunks of their own ("Zephyr K7", "Aurora Mini") are
    # merged under the heading they share.
    assert "Lantern catalogue" in queries and "Refund policy" in queries
    assert "Exceptions" not in queries  # one content word: not a fair query
    leave = [e for e in entries if e.relevant_doc_ids == ("docs:hr/leave.md",)]
    assert all(e.groups == ("hr",) for e in leave)  # asked by the groups that can see the answer

    gated = s.model_copy(update={"eval": s.eval.model_copy(update={"golden_file": str(out)})})
    report = evaluation.evaluate(gated, "production")
    assert report.per_tag["synthetic"]["queries"] == len(entries)
    assert report.overall["recall_at_k"] >= 0.9  # a healthy build answers its own headings
    assert main(["golden", "bootstrap", "--config", str(cfg), "--n", "0"]) == 2


def test_golden_add_feedback_cli_reports_what_it_did(built, tmp_path, capsys):
    cfg, s, _ = built
    from ingest_platform.cli import main

    r = Retriever(settings=s, trace=True)
    answer = r.search("parental leave weeks", 2, groups=["hr"])
    r.feedback(answer.trace_id, doc_id="docs:hr/leave.md", relevant=True, judge="erin")
    out = tmp_path / "prod.jsonl"
    capsys.readouterr()
    assert main(["golden", "add-feedback", "--config", str(cfg), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 1 and summary["entries"] == 1
    (entry,) = evaluation.load_golden(out)
    assert entry.groups == ("hr",) and entry.tags == ("production",)
