"""The benchmarks run end to end on a tiny SciFact slice (they are not part of the default suite's
measurements: this only proves each one-command benchmark works and writes its JSON), and the fusion
they tuned behaves as documented."""

from __future__ import annotations

import json

import pytest

from ingest_platform.query import fuse

from .conftest import SCIFACT, need


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from benchmarks.common import slice_beir

    need(SCIFACT)
    return slice_beir(SCIFACT, tmp_path_factory.mktemp("beir") / "mini", docs=20, queries=5)


@pytest.fixture(scope="module")
def beir_result(mini, tmp_path_factory):
    from benchmarks import beir

    work = tmp_path_factory.mktemp("work")
    out = work / "beir.json"
    beir.main([str(mini), "--work", str(work / "beir"), "--out", str(out)])
    return work, json.loads(out.read_text())


def test_beir_scores_every_mode(beir_result):
    _, result = beir_result
    assert result["split"] == "test" and result["queries"] == 5 and result["index"]["documents"] == 20
    assert set(result["modes"]) == {"keyword", "vector", "hybrid"}
    for metrics in result["modes"].values():
        for name in ("ndcg@10", "recall@100", "mrr@10"):
            assert 0.0 <= metrics[name] <= 1.0
    # Every relevant document is in a 20-document index, so recall@100 is 1 in every mode.
    assert all(m["recall@100"] == 1.0 for m in result["modes"].values())
    assert result["timings"]["build_s"] > 0 and set(result["timings"]["query_s"]) == {"keyword", "vector", "hybrid"}


def test_beir_metrics_match_hand_computation():
    from benchmarks.beir import evaluate, mrr_at, ndcg_at, recall_at

    rels = {"a": 1, "b": 2}
    assert ndcg_at(["b", "a"], rels) == pytest.approx(1.0)
    # dcg = 1/log2(3); idcg = 2 + 1/log2(3)
    assert ndcg_at(["x", "a"], rels) == pytest.approx((1 / 1.5849625) / (2 + 1 / 1.5849625), rel=1e-6)
    assert recall_at(["a", "x"], rels) == 0.5 and mrr_at(["x", "y", "b"], rels) == pytest.approx(1 / 3)
    assert evaluate({"q": ["b", "a"]}, {"q": rels, "empty": {"z": 0}})["queries"] == 1


def test_query_latency_reports_percentiles(beir_result, mini):
    from benchmarks import query_latency

    work, _ = beir_result
    out = work / "latency.json"
    query_latency.main(["--dataset", str(mini), "--home", str(work / "beir"), "--synthetic-chunks", "300",
                        "--synthetic-work", str(work / "synthetic"), "--queries", "5", "--out", str(out)])
    result = json.loads(out.read_text())
    for index in ("mini", "synthetic"):
        r = result["indexes"][index]
        for mode in ("keyword", "vector", "hybrid"):
            s = r["single_client"][mode]
            assert 0 < s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] and s["qps"] > 0
            assert r["concurrent"][mode]["n"] == 5
    assert result["indexes"]["synthetic"]["chunks"] == 300
    # Issue 16: ONNX agreement and the serving configurations, each with its nDCG@10.
    assert result["agreement"]["cosine_min"] >= 0.999 and result["agreement"]["passes_0_999"]
    configs = result["configs"]["configs"]
    from ingest_platform.config import QuerySettings

    default = QuerySettings().candidates  # the shipped depth: both encoders, both vector searches
    torch_, onnx_disk, onnx_memory = (f"hybrid, torch, LanceDB vector search @{default}",
                                      f"hybrid, onnx, LanceDB vector search @{default}",
                                      f"hybrid, onnx, in-memory vector search @{default}")
    assert {torch_, onnx_disk, onnx_memory} <= set(configs)
    assert len([c for c in configs if c.startswith("hybrid, onnx, in-memory")]) >= 2  # other depths too
    for row in configs.values():
        assert row["n"] == 5 and 0.0 <= row["ndcg@10"] <= 1.0 and row["p50_ms"] > 0
    # The same retrieval whichever encoder or vector search answers.
    assert configs[onnx_disk]["ndcg@10"] == pytest.approx(configs[torch_]["ndcg@10"])
    assert configs[onnx_memory]["ndcg@10"] == pytest.approx(configs[onnx_disk]["ndcg@10"])
    assert set(result["configs"]["bare_hybrid_onnx"]) == {"LanceDB", "in-memory, every column", "in-memory, ids"}
    assert -1.0 < configs[onnx_memory]["overhead_p50_vs_bare"] < 10.0


def test_semantic_cache_reports_hit_rates_and_quality_cost(beir_result, mini, tmp_path):
    from benchmarks import semantic_cache

    from benchmarks.common import slice_beir

    work, _ = beir_result
    both = slice_beir(SCIFACT, tmp_path / "both", docs=20, queries=5, split="train")
    (both / "qrels" / "test.tsv").write_text((mini / "qrels" / "test.tsv").read_text())
    with open(both / "queries.jsonl", "a") as fh:
        fh.write((mini / "queries.jsonl").read_text())
    out = tmp_path / "semantic.json"
    semantic_cache.main(["--dataset", str(both), "--home", str(tmp_path / "w"), "--thresholds", "0.95",
                         "--out", str(out)])
    result = json.loads(out.read_text())["thresholds"]["0.95"]
    assert set(result["paraphrases"]) and all(0 <= v["hit_rate"] <= 1 for v in result["paraphrases"].values())
    assert 0 <= result["other_questions"]["hit_rate"] <= 1


def test_incremental_reembeds_exactly_the_changed_chunks(mini, tmp_path):
    from benchmarks import incremental

    out = tmp_path / "incremental.json"
    incremental.main([str(mini), "--in-process", "--fraction", "0.1", "--work", str(tmp_path / "w"), "--out", str(out)])
    result = json.loads(out.read_text())
    full, noop, changed = result["runs"]
    assert result["changed_docs"] == 2
    assert noop["embedded"] == 0 and noop["upserted_docs"] == 0
    assert changed["embedded"] == changed["expected_embedded"] > 0 and changed["upserted_docs"] == 2


def test_ablations_score_the_shipped_default_and_every_variant(tmp_path, capsys):
    from benchmarks import ablations
    from benchmarks.common import slice_beir

    # Ablations refuse the test split, so this slice is of train.
    train = slice_beir(need(SCIFACT), tmp_path / "mini-train", docs=20, queries=5, split="train")
    out = tmp_path / "ablations.json"
    ablations.main([str(train), "--limit-queries", "3", "--work", str(tmp_path / "w"), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["split"] == "train" and result["queries"] == 3 and result["baseline"] == "shipped"
    variants = {v["variant"]: v for v in result["variants"]}
    assert set(variants) == set(ablations.VARIANTS)
    from ingest_platform.config import QuerySettings

    q = QuerySettings()  # the shipped defaults
    assert variants["shipped"]["params"] == {"fusion": q.fusion, "vector_weight": q.vector_weight,
                                             "keyword_weight": q.keyword_weight, "depth": q.candidates}
    for v in variants.values():
        assert v["grid"] and v["params"] in [g["params"] for g in v["grid"]]
        for name in ("ndcg@10", "recall@100", "mrr@10"):
            assert 0.0 <= v[name] <= 1.0
        assert v["delta_ndcg@10"] == pytest.approx(v["ndcg@10"] - variants["shipped"]["ndcg@10"])
    # Each variant is also compared with the shipped fusion at its best point's vector weight.
    controls = {g["params"]["vector_weight"]: g["ndcg@10"]
                for c in ("shipped", "shipped_weights") for g in variants[c]["grid"]}
    for name in ("title_prefixed", "doc_zscore"):
        v = variants[name]
        assert controls[v["control_vector_weight"]] == pytest.approx(v["ndcg@10"] - v["delta_same_weight"])
        assert v["delta_same_weight_se"] >= 0
    # Score completion's own fusion, with nothing completed, is the shipped fusion.
    for g in variants["score_completion"]["grid"]:
        if g["params"]["completed"] == "none":
            assert g["ndcg@10"] == pytest.approx(controls[g["params"]["vector_weight"]])
    assert not result["dataset_dir"].startswith("/")
    # The embeddings it computed are cached: a second run embeds nothing and scores the same.
    capsys.readouterr()
    again = ablations.main([str(train), "--limit-queries", "3", "--work", str(tmp_path / "w"), "--out", str(out),
                            "--variants", "title_prefixed,title_vector"])
    assert "embedding" not in capsys.readouterr().out
    again = {v["variant"]: v for v in again["variants"]}
    assert set(again) == {"shipped", "shipped_weights", "title_prefixed", "title_vector"}
    assert all(again[v]["grid"] == variants[v]["grid"] for v in again)
    with pytest.raises(SystemExit):
        ablations.main([str(train), "--split", "test", "--out", str(out)])


def test_ingest_reports_stages_efficiency_and_memory(mini, tmp_path):
    from benchmarks import ingest

    out = tmp_path / "ingest.json"
    ingest.main([str(mini), "--in-process", "--memory-docs", "6", "--scale", "2", "--work", str(tmp_path / "w"),
                 "--out", str(out)])
    result = json.loads(out.read_text())
    t = result["throughput"]
    assert t["documents"] == 20 and t["chunks"] > 0
    # The interleaved comparison embeds every text the build's embed stage did, once on each side,
    # a pair per shard, the side that runs first alternating.
    ee = t["embedding_efficiency"]
    assert ee["texts"] == t["stages"]["embed"]["summary"]["embedded"] == sum(p["texts"] for p in ee["pairs"])
    assert [p["stage_first"] for p in ee["pairs"]][:2] == [True, False]
    assert ee["ratio"] > 0 and ee["ratio_per_shard"]["min"] <= ee["ratio"] <= ee["ratio_per_shard"]["max"]
    assert 0 < ee["stage_encode_s"] < ee["stage_wall_s"] and 0 < ee["ratio_in_stage"] < 1
    m = result["memory"]
    assert m["1x"]["documents"] == 6 and m["2x"]["documents"] == 12 and m["ratio"] > 0
    assert m["encoder"] == "the model"


def test_ingest_memory_with_the_stand_in_encoder(mini, tmp_path):
    """The quick memory comparison: both builds with vectors from text hashes, unit length and of
    the model's dimension as the gates require, equal for equal texts as the caches assume."""
    import numpy as np

    from benchmarks import ingest
    from ingest_platform.embedding import get_embedder

    stand_in = ingest.StandInEncoder(get_embedder())
    vectors = stand_in.encode(["a text", "another", "a text"])
    assert vectors.shape == (3, stand_in.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    out = tmp_path / "ingest.json"
    ingest.main([str(mini), "--in-process", "--skip-throughput", "--skip-incremental", "--memory-docs", "6",
                 "--scale", "2", "--stand-in-encoder", "--work", str(tmp_path / "w"), "--out", str(out)])
    m = json.loads(out.read_text())["memory"]
    assert m["encoder"].startswith("stand-in") and m["2x"]["documents"] == 12 and m["ratio"] > 0
    assert all(m["stage_peaks_mb"]["2x"][stage] > 0 for stage in ("embed", "gates"))


# ---- the fusion the BEIR benchmark tuned ------------------------------------------------------


def _row(cid, doc, **score):
    return {"chunk_id": cid, "doc_id": doc, "text": cid, "source_uri": "u", "title": None, "heading_path": None,
            "page_start": None, "page_end": None, **score}


def test_zscore_fusion_keeps_a_single_list_in_order():
    rows = [_row("c", "d1", _score=9.0), _row("a", "d2", _score=3.0), _row("b", "d3", _score=1.0)]
    hits = fuse({"keyword": rows}, {"keyword": 0.4}, 60, 10, method="zscore")
    assert [h.chunk_id for h in hits] == ["c", "a", "b"]
    assert hits[0].ranks == {"keyword": 1}


def test_zscore_fusion_weighs_standardised_scores():
    vector = [_row("a", "d1", _distance=0.10), _row("b", "d2", _distance=0.12), _row("c", "d3", _distance=0.50)]
    keyword = [_row("c", "d3", _score=30.0), _row("b", "d2", _score=29.0), _row("a", "d1", _score=1.0)]
    # z-scores: vector a 0.76, b 0.65, c -1.41; keyword c 0.74, b 0.67, a -1.41. "b" is near the top
    # of both lists, so it wins although neither list ranks it first; RRF cannot see that.
    hits = fuse({"vector": vector, "keyword": keyword}, {"vector": 0.5, "keyword": 0.5}, 60, 3, method="zscore")
    assert hits[0].chunk_id == "b"
    assert hits[0].ranks == {"vector": 2, "keyword": 2}
    # A chunk only one retriever found counts as the other list's last candidate.
    hits = fuse({"vector": vector[:1], "keyword": keyword[:2]}, {"vector": 0.6, "keyword": 0.4}, 60, 3)
    assert {h.chunk_id for h in hits} == {"a", "b", "c"}


def test_rrf_fusion_is_still_available():
    vector = [_row("a", "d1", _distance=0.1), _row("b", "d2", _distance=0.2)]
    keyword = [_row("b", "d2", _score=5.0), _row("c", "d3", _score=4.0)]
    hits = fuse({"vector": vector, "keyword": keyword}, {"vector": 1.0, "keyword": 1.0}, 60, 3, method="rrf")
    assert hits[0].chunk_id == "b" and hits[0].score == pytest.approx(1 / 62 + 1 / 61, abs=1e-7)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse({"vector": vector}, {}, 60, 3, method="max")


def test_disk_reports_the_state_after_every_maintenance(mini, tmp_path):
    from benchmarks import disk

    out = tmp_path / "disk.json"
    result = disk.main([str(mini), "--runs", "4", "--maintain-every", "2", "--work", str(tmp_path / "w"),
                        "--out", str(out)])
    assert json.loads(out.read_text())["runs"] == 4
    assert len(result["ratio_after_each_maintenance"]) == 2 and result["per_run"][-1]["maintained"]
    assert result["state_bytes_after_first"] > 0 and all(r["promoted"] for r in result["per_run"][1:])


def test_segments_compares_an_index_between_compactions_with_a_fresh_one(mini, tmp_path):
    from benchmarks import segments

    out = tmp_path / "segments.json"
    result = segments.main([str(mini), "--writes", "3", "--queries", "3", "--work", str(tmp_path / "w"),
                            "--out", str(out)])
    assert json.loads(out.read_text())["writes"] == 3
    assert result["shapes"]["fresh"]["index_segments"] == 1
    assert result["shapes"]["deltas"]["index_segments"] == 4 and result["shapes"]["deltas"]["fragments"] == 4
    assert all(m["fresh"]["p50_ms"] > 0 and m["deltas"]["p50_ms"] > 0 for m in result["modes"].values())


@pytest.mark.slow
def test_fidelity_renders_files_and_scores_them_beside_the_records(tmp_path):
    """End to end on a small rendered slice: SciFact abstracts as real PDF, DOCX and HTML files go
    through the directory source, parse, reconstruction and chunking, and are scored like the
    records. DOCX and HTML carry the same texts, so they must rank exactly as the records do."""
    from benchmarks import fidelity

    need(SCIFACT)
    out = tmp_path / "fidelity.json"
    result = fidelity.main(["--limit-docs", "30", "--limit-queries", "5", "--work", str(tmp_path / "work"),
                            "--out", str(out)])
    assert json.loads(out.read_text())["documents"] == 30
    paths = result["paths"]
    assert set(paths) == {"records", "pdf", "docx", "html"}
    for fmt in ("pdf", "docx", "html"):
        row = paths[fmt]
        assert row["parse_failed"] == 0 and row["documents"] == 30
        assert row["build_ratio_to_records"] > 0 and row["build_ratio_same_embed_time"] > 0
        assert set(row["naive"]) == {"keyword", "vector", "hybrid"}
    for fmt in ("docx", "html"):
        assert paths[fmt]["chunks"] == paths["records"]["chunks"]
        assert paths[fmt]["delta_vs_records"] == {"keyword": 0.0, "vector": 0.0, "hybrid": 0.0}
    # Printed lines were joined back: about as many chunks per document as the records, not a
    # chunk per line, and no fragment under the minimum except a whole short document.
    assert paths["pdf"]["chunks_per_document"] <= 1.2 * paths["records"]["chunks_per_document"]
    assert paths["pdf"]["chunks_under_min_tokens"] <= paths["records"]["chunks_under_min_tokens"] + 1


def test_naive_script_scores_a_slice_with_a_named_model(mini, tmp_path):
    """``python -m benchmarks.naive --model M``: whole documents embedded by the model it names."""
    from benchmarks import naive

    out = tmp_path / "naive.json"
    result = naive.main([str(mini), "--model", "bge-small-en-v1.5", "--work", str(tmp_path / "work"),
                         "--out", str(out)])
    assert json.loads(out.read_text())["model"] == "bge-small-en-v1.5"
    assert result["documents"] == 20 and result["queries"] == 5
    assert set(result["modes"]) == {"vector", "keyword", "hybrid"}
    for metrics in result["modes"].values():
        assert 0.0 <= metrics["ndcg@10"] <= 1.0 and metrics["queries"] == 5


def test_chunk_sizes_compares_each_size_with_the_first_query_by_query(tmp_path):
    from benchmarks import chunk_sizes
    from benchmarks.common import slice_beir

    train = slice_beir(need(SCIFACT), tmp_path / "mini-train", docs=20, queries=5, split="train")
    out = tmp_path / "sizes.json"
    result = chunk_sizes.main([str(train), "--sizes", "64,200", "--work", str(tmp_path / "work"),
                               "--cost-documents", "5", "--rounds", "1", "--out", str(out)])
    assert json.loads(out.read_text())["baseline"] == 64
    small, large = result["sizes"]
    assert small["chunks"] > large["chunks"] >= 20  # smaller chunks, more of them; every document indexed
    for mode in ("keyword", "vector", "hybrid"):
        assert small["modes"][mode]["delta_ndcg@10"] == 0.0
        diffs = [b - a for a, b in zip(small["per_query_ndcg@10"][mode], large["per_query_ndcg@10"][mode])]
        assert large["modes"][mode]["delta_ndcg@10"] == pytest.approx(sum(diffs) / len(diffs))
    assert small["embed_cost"]["ratio_to_first"] == 1.0 and large["embed_cost"]["encode_s"] > 0
    assert small["embed_cost"]["chunks"] > large["embed_cost"]["chunks"]
