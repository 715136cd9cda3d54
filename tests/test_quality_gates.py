"""Quality gates end to end with the real pipeline on the sample corpus: a good build is promoted; a
degraded build is not and production keeps answering as before; a failing data-quality check blocks
promotion; freshness checks fail on stale input and pass after a run. Plus the suites and the
freshness arithmetic on small hand-made inputs."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ingest_platform import evaluation, freshness, gates, pipeline, promotion, quality
from ingest_platform import manifest as mf
from ingest_platform.config import load_settings
from ingest_platform.index import CANDIDATE, PRODUCTION
from ingest_platform.query import Retriever
from ingest_platform.schemas import ENRICHED, MANIFEST, conform

from .conftest import REPO, SAMPLE

QUESTION = "What does error code E-330 mean?"
CLOCK = "INGEST_PLATFORM_NOW"


# ---- helpers ------------------------------------------------------------------------------------


def make_root(root: Path, extra_toml: str = "") -> Path:
    """The repo's own config next to a copy of the sample corpus and the golden set."""
    shutil.copytree(SAMPLE, root / "data" / "sample")
    shutil.copy(REPO / "data" / "golden.jsonl", root / "data" / "golden.jsonl")
    text = (REPO / "ingest-platform.toml").read_text().replace('home = ".ingest-state"', 'home = "state"')
    (root / "ingest-platform.toml").write_text(text + extra_toml)
    return root / "ingest-platform.toml"


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("dagster"))  # a fresh Dagster instance
    return dst / "ingest-platform.toml"


def run(cfg: Path, **kw):
    import definitions

    return definitions.execute_run(config_file=str(cfg), **kw)


def checks_of(result) -> dict[str, object]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialized(result) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


def table_rows(value) -> list[dict]:
    """The rows of a ``TableMetadataValue``."""
    return [r.data for r in value.records]


def answer(settings, ref=PRODUCTION) -> tuple[int, str, str]:
    res = Retriever(settings=settings, ref=ref, trace=False, cache_size=0, operator=ref != PRODUCTION).search(QUESTION, 1)
    return res.index_version, res.hits[0].doc_id, res.hits[0].text


def garble(path: Path) -> None:
    """Reverse every word of 4+ letters (in HTML, only the text between tags): the words no longer
    match anything, by keyword or by vector."""
    def words(text: str) -> str:
        return re.sub(r"[A-Za-z]{4,}", lambda m: m.group(0)[::-1].lower(), text)

    text = path.read_text()
    if path.suffix == ".html":
        path.write_text(re.sub(r">([^<]+)<", lambda m: ">" + words(m.group(1)) + "<", text))
    else:
        path.write_text(words(text))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One good build of the sample corpus through Dagster (shared: the scenarios copy it)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("INGEST_PLATFORM_")]:
            mp.delenv(key)
        root = tmp_path_factory.mktemp("good")
        cfg = make_root(root)
        result = run(cfg)
    return root, cfg, result


# ---- end to end ---------------------------------------------------------------------------------


def test_good_build_passes_every_gate_and_is_promoted(good):
    root, cfg, result = good
    s = load_settings(cfg)
    checks = checks_of(result)
    assert result.success
    assert {"manifest_quality", "chunks_quality", "embeddings_quality", "index_quality",
            "eval_gate"} <= set(checks)
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items() if not c.passed}
    tags = pipeline.index_store(s).tags()
    assert tags[PRODUCTION] == tags[CANDIDATE]
    recorded = promotion.check_gates(s, tags[PRODUCTION])
    assert {"eval_gate", "embeddings_quality", "index_quality"} <= set(recorded)

    # The shipped golden set clears the default floors on the sample corpus.
    meta = materialized(result)
    ev = meta["index_eval"]
    assert ev["candidate_version"] == str(tags[CANDIDATE]) and ev["production_version"] == "none"
    assert ev["recall@10"] >= s.eval.min_recall_at_k and ev["mrr@10"] >= s.eval.min_mrr_at_10
    assert "paraphrase" in {r["tag"] for r in table_rows(ev["per_tag"])}
    assert "recall@10" in {r["metric"] for r in table_rows(ev["overall"])}
    # The plot is inline (a data URI), never a path on the server.
    assert ev["history_plot"].startswith("![eval history by index version](data:image/png;base64,")
    assert "history_plot_file" not in ev
    gate = checks["eval_gate"]
    assert "first build" in gate.description
    # GX statistics and the suites' own numbers are in the checks' metadata.
    chunks = checks["chunks_quality"].metadata
    assert chunks["expectations_failed"].value == 0 and chunks["chunks"].value > 50
    assert checks["embeddings_quality"].metadata["expected_dimension"].value == "384"

    # The CLI payload reports the same numbers as the asset (production is the candidate now).
    payload = evaluation.cli_payload(s)
    assert payload["version"] == tags[CANDIDATE] and payload["verdict"]["passed"]
    assert payload["metrics"]["recall_at_k"] == pytest.approx(ev["recall@10"], abs=1e-4)
    assert payload["metrics"]["mrr_at_10"] == pytest.approx(ev["mrr@10"], abs=1e-4)
    assert payload["production"]["version"] == tags[PRODUCTION] and len(payload["per_query"]) >= 30
    assert evaluation.history(s)[-1]["version"] == tags[CANDIDATE]


def test_degraded_build_is_not_promoted_and_production_keeps_answering(good, tmp_path, monkeypatch):
    cfg = copy_root(good[0], tmp_path / "degraded")
    s = load_settings(cfg)
    before = answer(s)
    assert before[1] == "sample:support/error-codes.md"
    production = before[0]
    # Garble the policies and the error codes (a third of the golden answers; fewer re-embeddings
    # keep the test quick).
    sample = tmp_path / "degraded" / "data" / "sample"
    for path in [*(sample / "policies").glob("*.*"), sample / "support" / "error-codes.md"]:
        garble(path)

    result = run(cfg)
    checks = checks_of(result)
    assert not result.success
    gate = checks["eval_gate"]
    assert not gate.passed
    assert "fell from" in gate.description
    # The data itself is well-formed: the eval gate alone caught the damage.
    assert checks["chunks_quality"].passed and checks["embeddings_quality"].passed
    worse = [r.data["id"] for r in gate.metadata["worse_queries"].value.records]
    assert "q01" in worse and gate.metadata["queries_worse"].value >= 5
    assert "production_index" not in materialized(result)

    store = pipeline.index_store(s)
    tags = store.tags()
    assert tags[PRODUCTION] == production and tags[CANDIDATE] != production
    assert not gates.results(s.state, tags[CANDIDATE])["eval_gate"]["passed"]
    with pytest.raises(gates.GateError, match="eval_gate"):
        promotion.check_gates(s, tags[CANDIDATE])
    assert answer(s) == before  # serving still reads the good version
    assert answer(s, CANDIDATE)[2] != before[2]
    assert {r["version"] for r in evaluation.history(s)} >= {production, tags[CANDIDATE]}

    # Production now lags the source changes: the freshness check says so once the window passed.
    import definitions

    monkeypatch.setenv(CLOCK, (datetime.now(UTC) + timedelta(hours=30)).isoformat())
    lag = checks_of(definitions.execute_freshness(config_file=str(cfg)))["production_lag"]
    assert not lag.passed and lag.metadata["unserved_changes"].value > 0


def test_failing_data_quality_check_blocks_promotion(good, tmp_path):
    """Vectors that are not unit length (a broken embedder or cache): embeddings_quality fails,
    so nothing downstream of the candidate runs and production stays where it was."""
    import dagster as dg

    import definitions
    from resources import EmbedderResource, build_resources

    class Scaled:
        def __init__(self, inner):
            self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim

        def encode(self, texts, progress=None, chunk=1024):
            return self.inner.encode(texts, progress=progress) * 3.0

    class CorruptEmbedder(EmbedderResource):
        def setup_for_execution(self, context) -> None:
            super().setup_for_execution(context)
            self._embedder = Scaled(self._embedder)

    cfg = copy_root(good[0], tmp_path / "corrupt")
    s = load_settings(cfg)
    production = answer(s)
    (tmp_path / "corrupt" / "data" / "sample" / "support" / "night-shift.md").write_text(
        "# Night shift\n\nThe Grand Marais night shift covers lantern testing from 22:00 to 06:00.\n")
    resources = build_resources(str(cfg), str(s.home))
    resources["embedder"] = CorruptEmbedder(platform=resources["platform"])
    result = dg.materialize([*definitions.ASSETS, *definitions.CHECKS], resources=resources,
                            instance=definitions.instance_for(s.home), raise_on_error=False)
    checks = checks_of(result)
    emb = checks["embeddings_quality"]
    assert not result.success and not emb.passed
    assert emb.severity == dg.AssetCheckSeverity.ERROR
    assert "expect_column_values_to_be_between(norm)" in emb.description
    assert any("night-shift" in str(r.data) for r in emb.metadata["failing_examples"].value.records)
    assert "norm between" in emb.description  # plain words beside GX's name
    assert emb.metadata["norm_max"].value == pytest.approx(3.0, abs=0.01)
    assert "eval_gate" not in checks and "production_index" not in materialized(result)
    store = pipeline.index_store(s)
    assert store.tags()[PRODUCTION] == production[0]
    assert gates.results(s.state, store.tags()[CANDIDATE])["embeddings_quality"]["passed"] is False
    # The suite reads the version it is asked about: production's vectors are still unit length.
    assert quality.check_embeddings(s, store.tags()[PRODUCTION]).passed
    assert answer(s) == production


def test_freshness_fails_on_stale_input_and_passes_after_a_run(good, tmp_path, monkeypatch):
    import definitions

    cfg = copy_root(good[0], tmp_path / "fresh")
    s = load_settings(cfg)
    last = max(pipeline.last_scans(s).values())
    monkeypatch.setenv(CLOCK, (last + timedelta(hours=30)).isoformat())
    stale = checks_of(definitions.execute_freshness(config_file=str(cfg)))
    assert not stale["source_scan_age"].passed
    assert stale["source_scan_age"].metadata["stale_sources"].value == "sample"
    assert stale["source_scan_age"].metadata["max_age_hours"].value == pytest.approx(30.0, abs=0.01)
    assert stale["production_lag"].passed  # production holds every change

    monkeypatch.delenv(CLOCK)
    assert run(cfg).success  # nothing changed: a quick run that scans again
    monkeypatch.setenv(CLOCK, (datetime.now(UTC) + timedelta(hours=1)).isoformat())
    fresh = checks_of(definitions.execute_freshness(config_file=str(cfg)))
    assert fresh["source_scan_age"].passed and fresh["production_lag"].passed
    assert fresh["source_scan_age"].metadata["max_age_hours"].value <= 1.1


def test_definitions_wire_jobs_schedule_and_blocking():
    import definitions

    repo = definitions.defs.get_repository_def()
    index_job = repo.get_job("index_job")
    fresh_job = repo.get_job("freshness_job")
    node_names = {n.name for n in index_job.nodes}
    assert "index_eval" in node_names and not any("freshness" in n or "scan_age" in n for n in node_names)
    assert {n.name for n in fresh_job.nodes} and not {"document_manifest", "candidate_index"} & {n.name for n in fresh_job.nodes}
    assert {s.name: s.job_name for s in repo.schedule_defs} == {"freshness_schedule": "freshness_job", "hourly_reindex": "index_job",
                                                               "daily_review": "production_loop_job",
                                                               "daily_maintenance": "maintenance_job"}
    specs = {spec.name: spec for c in definitions.CHECKS for spec in c.check_specs}
    assert specs["eval_gate"].blocking and specs["embeddings_quality"].blocking
    assert specs["manifest_quality"].asset_key.to_user_string() == "parsed_documents"
    prod = next(a for a in definitions.ASSETS if a.key.to_user_string() == "production_index")
    assert {k.to_user_string() for k in prod.asset_deps[prod.key]} == {"candidate_index", "index_eval"}


# ---- suites and freshness on hand-made inputs ---------------------------------------------------


def chunk_rows(n=4, **overrides):
    rows = []
    for i in range(n):
        rows.append({"chunk_id": f"c{i}", "doc_id": f"s:d{i}", "text": f"chunk number {i} about lanterns",
                     "token_count": 10, "source_uri": f"file:///d{i}", "title": f"Doc {i}", "format": "md",
                     "access_groups": ["public"]})
    for i, changes in overrides.items():
        rows[int(i[1:])].update(changes)
    return conform(pa.Table.from_pylist(rows), ENRICHED)


def test_chunks_suite_finds_each_kind_of_bad_row(tmp_path):
    s = load_settings(None, home=str(tmp_path / "state"), default_access_groups=["public"])
    ok = quality.check_chunks(s, chunk_rows())
    assert ok.passed and ok.statistics["unsuccessful_expectations"] == 0 and ok.failing_examples == []
    bad = quality.check_chunks(s, chunk_rows(
        8, r0={"text": "   "}, r1={"token_count": 0}, r2={"chunk_id": "c3"}, r4={"title": None},
        r5={"access_groups": []}, r6={"text": "chunk number 7 about LANTERNS "}))
    assert not bad.passed
    failed = set(bad.failed_expectations)
    assert {"expect_column_values_to_match_regex(text)", "expect_column_values_to_be_between(token_count)",
            "expect_column_values_to_be_unique(chunk_id)", "expect_column_values_to_not_be_null(title)",
            "expect_column_values_to_be_between(access_group_count)"} <= failed
    # 1 duplicate text among 8 chunks is 0.125 > 0.1.
    assert "expect_column_proportion_of_unique_values_to_be_between(text_normalised)" in failed
    assert bad.observed["duplicate_text_ratio"] == 0.125
    assert len(bad.failing_examples) == s.quality.max_examples
    assert {"c0", "c1"} <= {e.get("chunk_id") for e in bad.failing_examples}
    # Default-deny: an empty group list is the policy, not a defect; null is always a defect.
    deny = load_settings(None, home=str(tmp_path / "state"))
    empty = quality.check_chunks(deny, chunk_rows(r1={"access_groups": []}))
    assert empty.passed and empty.observed["chunks_visible_to_nobody"] == 1
    null = quality.check_chunks(deny, chunk_rows(r1={"access_groups": None}))
    assert not null.passed and null.failed_expectations == ["expect_column_values_to_not_be_null(access_groups)"]


def test_manifest_suite_parse_failure_rate(tmp_path):
    s = load_settings(None, home=str(tmp_path / "state"), quality={"max_parse_failure_rate": 0.25})
    now = datetime.now(UTC)

    def save(statuses):
        rows = [{"doc_id": f"s:{i}", "source": "s", "format": "pdf", "status": st, "last_changed": now,
                 "reason": "encrypted PDF" if st == "failed" else None} for i, st in enumerate(statuses)]
        mf.save_manifest(s.state, pa.Table.from_pylist(rows, schema=MANIFEST))

    save(["unchanged", "new", "failed", "unchanged", "deleted", "deleted"])  # 1 of 4 live rows failed
    ok = quality.check_manifest(s)
    assert ok.passed and ok.observed["parse_failure_rate"] == 0.25 and not ok.blocking
    save(["unchanged", "failed", "failed", "unchanged"])
    bad = quality.check_manifest(s)
    assert not bad.passed and bad.observed["failure_reasons"] == {"encrypted PDF": 2}
    assert [e["doc_id"] for e in bad.failing_examples] == ["s:1", "s:2"]
    save([])
    assert not quality.check_manifest(s).passed  # no documents at all


def test_freshness_arithmetic():
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    h = timedelta(hours=1)
    rows = freshness.source_freshness(["a", "b", "c"], {"a": t0, "b": t0 - 30 * h}, t0 + 2 * h, 24)
    assert [(r.source, r.age_hours, r.fresh) for r in rows] == [("a", 2.0, True), ("b", 32.0, False), ("c", None, False)]

    promos = [("promote", 3, t0), ("promote", 5, t0 + 10 * h), ("rollback", 3, t0 + 11 * h)]
    # Production is v3 again after the rollback: it serves what was promoted at t0.
    lag = freshness.production_lag([t0 - h, t0 + 2 * h, t0 + 5 * h], 3, promos, t0 + 30 * h, 24)
    assert lag.promoted_at == t0.isoformat() and lag.unserved_changes == 2
    assert lag.lag_hours == 28.0 and not lag.fresh  # since the oldest unserved change (t0 + 2h)
    assert freshness.production_lag([t0 - h], 3, promos, t0 + 300 * h, 24).fresh  # nothing unserved
    first = freshness.production_lag([t0], None, [], t0 + 2 * h, 24)
    assert first.fresh and first.lag_hours == 2.0 and "nothing has been promoted" in first.reason
    assert freshness.production_lag([], None, [], t0, 24).fresh
