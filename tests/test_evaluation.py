"""Golden-set evaluation: metrics equal a hand computation, golden-set validation, the verdict,
history in DuckDB and its plot, and the shipped golden set."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ingest_platform import evaluation as ev
from ingest_platform.config import load_settings

from .conftest import REPO, SAMPLE

# ---- a tiny fixture, computed by hand -----------------------------------------------------------

GOLDEN = [
    # One answering document (grade 2) and a related one (grade 1).
    {"id": "qA", "query": "alpha fact", "relevant_doc_ids": ["d:a"], "grades": {"d:a": 2, "d:b": 1},
     "relevant_snippets": ["Alpha Fact"], "tags": ["exact-term"]},
    # Multi-hop: two answering documents, no grades (gain 1 each), one snippet per document.
    {"id": "qB", "query": "bee and sea", "relevant_doc_ids": ["d:b", "d:c"], "relevant_snippets": ["bee", "sea"],
     "tags": ["multi-hop", "paraphrase"], "groups": ["public", "hr"]},
    # Its document is never retrieved; no snippets (left out of the snippet means).
    {"id": "qC", "query": "zulu", "relevant_doc_ids": ["d:z"], "tags": ["paraphrase"]},
    # Judged by a snippet alone.
    {"id": "qD", "query": "delta", "relevant_snippets": ["delta"], "tags": ["exact-term"]},
]


@dataclass
class FakeHit:
    doc_id: str
    text: str


def hits(*pairs):
    return [FakeHit(d, t) for d, t in pairs]


# Hits in rank order (chunks; a document may appear more than once).
RESULTS = {
    "alpha fact": hits(("d:b", "beta text"), ("d:a", "the ALPHA fact is here"), ("d:a", "alpha again"), ("d:c", "c text")),
    "bee and sea": hits(("d:c", "sea shore"), ("d:x", "nothing"), ("d:x", "nothing 2"), ("d:b", "a bee")),
    "zulu": hits(("d:a", "alpha"), ("d:b", "beta")),
    "delta": hits(("d:a", "alpha"), ("d:d", "Delta  force"), ("d:d", "delta two")),
}

K = 3
L3 = math.log2(3)  # discount of rank 2; rank 1 is log2(2) = 1, rank 3 is log2(4) = 2

# By hand, k = 3 (top 3 hits, deduplicated by document; ranks are positions after deduplication):
# qA: top-3 docs [b, a]; all docs [b, a, c].  recall 1/1, hit 1, first relevant (a) at rank 2 -> MRR 1/2.
#     DCG = 1/1 (b, grade 1) + 2/log2(3) (a, grade 2) = 2.26186; ideal [2, 1] = 2 + 1/log2(3) = 2.63093
#     nDCG = 0.85972. Snippet "Alpha Fact" is in hit 2 -> snippet hit 1, snippet recall 1.
# qB: top-3 docs [c, x]; all docs [c, x, b].  recall 1/2, hit 1, MRR 1/1.
#     DCG = 1 + 0 + 1/log2(4) = 1.5; ideal [1, 1] = 1 + 1/log2(3) = 1.63093 -> nDCG 0.91972.
#     "sea" is in hit 1, "bee" only in hit 4 -> snippet hit 1, snippet recall 1/2.
# qC: nothing relevant -> 0, 0, 0, 0; no snippet metrics.
# qD: snippet-judged: relevant = {d} (its chunks contain "delta"); top-3 docs [a, d].
#     recall = snippet recall = 1, hit 1, MRR 1/2, DCG = 1/log2(3) = 0.63093, ideal [1] = 1 -> nDCG 0.63093.
HAND = {
    "qA": {"recall_at_k": 1.0, "hit_at_k": 1.0, "mrr_at_10": 0.5, "ndcg_at_10": (1 + 2 / L3) / (2 + 1 / L3),
           "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 1.0},
    "qB": {"recall_at_k": 0.5, "hit_at_k": 1.0, "mrr_at_10": 1.0, "ndcg_at_10": 1.5 / (1 + 1 / L3),
           "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 0.5},
    "qC": {"recall_at_k": 0.0, "hit_at_k": 0.0, "mrr_at_10": 0.0, "ndcg_at_10": 0.0,
           "snippet_hit_at_k": None, "snippet_recall_at_k": None},
    "qD": {"recall_at_k": 1.0, "hit_at_k": 1.0, "mrr_at_10": 0.5, "ndcg_at_10": 1 / L3,
           "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 1.0},
}
# The same numbers as decimals, to 5 places.
HAND_NDCG = {"qA": 0.85972, "qB": 0.91972, "qC": 0.0, "qD": 0.63093}
# Means over the 4 queries (snippet metrics over the 3 queries that have snippets).
HAND_OVERALL = {"queries": 4, "recall_at_k": 0.625, "hit_at_k": 0.75, "mrr_at_10": 0.5,
                "ndcg_at_10": (0.85972 + 0.91972 + 0.0 + 0.63093) / 4,  # 0.60259
                "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 2.5 / 3}
HAND_TAGS = {
    "exact-term": {"queries": 2, "recall_at_k": 1.0, "hit_at_k": 1.0, "mrr_at_10": 0.5,
                   "ndcg_at_10": (0.85972 + 0.63093) / 2, "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 1.0},
    "multi-hop": {"queries": 1, "recall_at_k": 0.5, "hit_at_k": 1.0, "mrr_at_10": 1.0, "ndcg_at_10": 0.91972,
                  "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 0.5},
    "paraphrase": {"queries": 2, "recall_at_k": 0.25, "hit_at_k": 0.5, "mrr_at_10": 0.5, "ndcg_at_10": 0.91972 / 2,
                   "snippet_hit_at_k": 1.0, "snippet_recall_at_k": 0.5},
}


class FakeRetriever:
    def __init__(self, results, version=7):
        self.results, self.version, self.calls = results, version, []

    def search(self, query, k, *, mode, groups):
        self.calls.append((query, k, mode, tuple(groups)))

        class R:
            pass

        r = R()
        r.hits = self.results[query][:k]
        return r


def write_golden(path: Path, records=GOLDEN) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@pytest.fixture()
def settings(tmp_path):
    golden = write_golden(tmp_path / "golden.jsonl")
    return load_settings(None, home=str(tmp_path / "state"), eval={"golden_file": str(golden), "k": K})


def approx(value, rel=1e-4):
    return pytest.approx(value, rel=rel, abs=1e-5)


def test_metrics_equal_hand_computation_per_query(settings):
    queries = {q.id: q for q in ev.load_golden(settings.eval.golden_file)}
    for qid, expected in HAND.items():
        score = ev.score_query(queries[qid], RESULTS[queries[qid].query], K)
        for metric, value in expected.items():
            got = score.metrics[metric]
            assert (got is None) if value is None else got == approx(value), (qid, metric, got, value)
        assert score.metrics["ndcg_at_10"] == approx(HAND_NDCG[qid])
    qa = ev.score_query(queries["qA"], RESULTS["alpha fact"], K)
    assert qa.retrieved == ["d:b", "d:a", "d:c"] and qa.missing == [] and qa.snippets_found == ["Alpha Fact"]
    qb = ev.score_query(queries["qB"], RESULTS["bee and sea"], K)
    assert qb.missing == ["d:b"]


def test_evaluate_through_a_retriever_aggregates_by_hand(settings):
    fake = FakeRetriever(RESULTS)
    report = ev.evaluate(settings, "candidate", retriever=fake)
    # Asked for max(k, 10) hits, with each query's groups (public by default).
    assert fake.calls[0] == ("alpha fact", 10, "hybrid", ("public",))
    assert fake.calls[1][3] == ("public", "hr")
    assert report.version == 7 and report.k == K and report.n_queries == 4
    assert set(report.overall) == set(HAND_OVERALL)
    for metric, value in HAND_OVERALL.items():
        assert report.overall[metric] == approx(value), metric
    assert set(report.per_tag) == set(HAND_TAGS)
    for tag, values in HAND_TAGS.items():
        for metric, value in values.items():
            assert report.per_tag[tag][metric] == approx(value), (tag, metric)
    assert report.overall["ndcg_at_10"] == approx(0.60259)
    assert [q.id for q in report.per_query] == ["qA", "qB", "qC", "qD"]
    # Round trip through the on-disk hand-over.
    ev.save_reports(settings, report, None)
    again, production = ev.load_reports(settings, 7)
    assert production is None and again.overall == report.overall and again.per_query == report.per_query


def test_compare_floors_regressions_and_worse_queries(settings):
    production = ev.evaluate(settings, retriever=FakeRetriever(RESULTS, version=3))
    floors = {"recall_at_k": 0.6, "mrr_at_10": 0.4}
    first = ev.compare(production, None, floors, 0.02)
    assert first.passed and first.production_version is None and first.worse == []
    same = ev.compare(production, production, floors, 0.02)
    assert same.passed and same.worse == []

    # The candidate loses qB's answers from the top 3: recall 0, hit 0; b now at rank 2, c at 3.
    worse_results = dict(RESULTS, **{"bee and sea": hits(("d:x", "x"), ("d:x", "x"), ("d:x", "x"),
                                                         ("d:b", "a bee"), ("d:c", "sea"))})
    candidate = ev.evaluate(settings, retriever=FakeRetriever(worse_results, version=4))
    # By hand: recall (1 + 0 + 0 + 1) / 4 = 0.5; hit 0.5; MRR (0.5 + 0.5 + 0 + 0.5) / 4 = 0.375;
    # qB nDCG = (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3)) = 0.69343.
    assert candidate.overall["recall_at_k"] == approx(0.5)
    assert candidate.overall["mrr_at_10"] == approx(0.375)
    assert candidate.per_query[1].metrics["ndcg_at_10"] == approx((1 / L3 + 0.5) / (1 + 1 / L3))
    verdict = ev.compare(candidate, production, floors, 0.02)
    assert not verdict.passed
    text = " ".join(verdict.reasons)
    assert "recall@3 = 0.500 is below the floor 0.600" in text and "MRR" not in text
    assert "mrr@10 = 0.375 is below the floor 0.400" in text
    assert "recall@3 fell from 0.625 (production v3) to 0.500" in text
    assert "hit@3 fell from 0.750" in text and "ndcg@10 fell" in text
    assert [w["id"] for w in verdict.worse] == ["qB"]
    assert verdict.worse[0]["recall@3"] == "0.500 -> 0.000" and verdict.worse[0]["mrr@10"] == "1.000 -> 0.500"
    # A failing verdict names the expected documents the corpus does not index (no manifest here: none).
    assert f"none of the {candidate.expected_documents} documents the golden set expects is indexed" in text
    partial = ev.compare(replace(candidate, unindexed_documents=["d:b"]), production, floors, 0.02)
    assert f"1 of the {candidate.expected_documents} documents the golden set expects are not indexed now (d:b)" in partial.reasons
    assert ev.compare(replace(candidate, unindexed_documents=["d:b"]), production, {}, 0.5).reasons == []
    # Without floors, a drop inside the margin passes; beyond it fails.
    assert ev.compare(candidate, production, {}, 0.5).passed
    assert not ev.compare(candidate, production, {}, 0.1).passed
    # The first build (no production) is judged by the floors alone.
    assert not ev.compare(candidate, None, floors, 0.02).passed
    assert ev.compare(candidate, None, {"recall_at_k": 0.5}, 0.02).passed


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"id": "x", "relevant_doc_ids": ["a"]}', "'query' must be a non-empty string"),
    ('{"query": "q", "relevant_doc_ids": ["a"]}', "'id' must be a non-empty string"),
    ('{"id": "x", "query": "q"}', "give 'relevant_doc_ids' and/or 'relevant_snippets'"),
    ('{"id": "x", "query": "q", "relevant_doc_ids": "a"}', "'relevant_doc_ids' must be a list"),
    ('{"id": "x", "query": "q", "relevant_doc_ids": ["a"], "grades": {"a": -1}}', "grade of 'a' must be a number >= 0"),
    ('{"id": "x", "query": "q", "relevant_doc_ids": ["a"], "grades": {"a": 0}}', "is a relevant doc id but has grade 0"),
    ('{"id": "x", "query": "q", "relevant_doc_ids": ["a"], "groups": []}', "'groups' is empty"),
    ('{"id": "x", "query": "q", "relevant_doc_id": ["a"]}', "unknown key(s) 'relevant_doc_id'"),
])
def test_golden_set_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps(GOLDEN[0]) + "\n\n" + line + "\n")
    with pytest.raises(ev.GoldenSetError) as err:
        ev.load_golden(path)
    assert message in str(err.value) and f"{path}:3" in str(err.value)


def test_golden_set_file_level_errors(tmp_path, settings):
    with pytest.raises(ev.GoldenSetError, match="does not exist"):
        ev.load_golden(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ev.GoldenSetError, match="has no queries"):
        ev.load_golden(tmp_path / "empty.jsonl")
    dup = write_golden(tmp_path / "dup.jsonl", [GOLDEN[0], GOLDEN[1], GOLDEN[0]])
    with pytest.raises(ev.GoldenSetError, match=r"dup.jsonl:3.*duplicate id 'qA' \(first on line 1\)"):
        ev.load_golden(dup)
    bare = load_settings(None, home=str(tmp_path / "s2"))
    with pytest.raises(ev.GoldenSetError, match="no golden set"):
        ev.evaluate(bare, retriever=FakeRetriever(RESULTS))


def test_history_in_duckdb_and_plot(settings, tmp_path):
    reports = [ev.evaluate(settings, "candidate", retriever=FakeRetriever(RESULTS, version=v)) for v in (3, 5)]
    ev.record_history(settings, reports[:1], run_id="run-1")
    ev.record_history(settings, reports, run_id="run-2")
    rows = ev.history(settings)
    assert [(r["run_id"], r["version"]) for r in rows] == [("run-1", 3), ("run-2", 3), ("run-2", 5)]
    assert rows[0]["recall_at_k"] == approx(0.625) and rows[0]["mrr_at_10"] == approx(0.5)
    con = ev.history_connection(settings)  # DuckDB over the history's Parquet files
    try:
        # One row per (run, version, metric) overall, and one per query.
        per_metric = con.execute("SELECT run_id, version, metric, count(*) FROM eval_metrics WHERE scope = 'overall' "
                                 "GROUP BY ALL HAVING count(*) > 1").fetchall()
        assert per_metric == []
        assert con.execute("SELECT count(*) FROM eval_metrics WHERE scope = 'overall'").fetchone()[0] == 3 * 6
        assert con.execute("SELECT count(*) FROM eval_queries").fetchone()[0] == 3 * 4
        tag = con.execute("SELECT value FROM eval_metrics WHERE scope = 'tag' AND tag = 'paraphrase' AND "
                          "metric = 'recall_at_k' AND run_id = 'run-1'").fetchone()[0]
        assert tag == approx(0.25)
    finally:
        con.close()
    png = ev.plot_history(settings, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 100_000
    assert ev.png_data_uri(png).startswith("data:image/png;base64,")
    # The inline trend: one row per metric over the versions, short enough for the UI to show inline.
    trend = ev.history_trend_md(settings)
    assert len(trend) < 1000 and "v3 → v5" in trend and trend.count("\n| ") == len(ev.GATED)
    assert ev.plot_history(load_settings(None, home=str(tmp_path / "nothing")), tmp_path / "none.png") is None


def test_history_writers_in_several_processes_never_wait_or_lose_rows(settings):
    """The history is append-only files: writers in other processes (checks of one run, two runs)
    add theirs at the same time and every run is there afterwards."""
    code = ("import sys; from tests.test_evaluation import FakeRetriever, RESULTS; from ingest_platform import "
            "evaluation as ev; from ingest_platform.config import load_settings; "
            "s = load_settings(None, home=sys.argv[1], eval={'golden_file': sys.argv[3], 'k': int(sys.argv[4])}); "
            "[ev.record_history(s, [ev.evaluate(s, retriever=FakeRetriever(RESULTS))], run_id=f'{sys.argv[2]}-{i}') "
            "for i in range(5)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(settings.home), f"p{n}", settings.eval.golden_file,
                               str(settings.eval.k)], cwd=REPO) for n in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert sorted(r["run_id"] for r in ev.history(settings)) == sorted(f"p{n}-{i}" for n in range(3) for i in range(5))


def test_shipped_golden_set_is_valid_for_the_sample_corpus():
    queries = ev.load_golden(REPO / "data" / "golden.jsonl")
    assert len(queries) >= 30
    tags = {t for q in queries for t in q.tags}
    assert {"exact-term", "paraphrase", "table", "multi-hop"} <= tags
    for q in queries:
        for doc in {*q.relevant_doc_ids, *q.grades}:
            assert doc.startswith("sample:") and (SAMPLE / doc.removeprefix("sample:")).is_file(), (q.id, doc)


def test_query_path_imports_neither_great_expectations_nor_dagster():
    code = ("import sys; import ingest_platform.evaluation, ingest_platform.query, ingest_platform.freshness, "
            "ingest_platform.quality; bad = [m for m in ('great_expectations', 'dagster', 'matplotlib') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
