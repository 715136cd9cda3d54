"""The serving side on a real index: trace ids, context packing, feedback (issue 16)."""

from __future__ import annotations

import json

import pytest

from ingest_platform import feedback, pipeline, traces
from ingest_platform.context import merge_overlap, tokenizer_counter
from ingest_platform.models import DEFAULT_MODEL
from ingest_platform.feedback import FeedbackError
from ingest_platform.query import QueryError, Retriever

from .conftest import REPO, SMALL_CORPUS, make_corpus, write

# One long section: at 48-token chunks with 16 tokens of overlap it spans several chunks whose
# boundary sentences repeat, which is what context packing must merge.
LONG = "# Warranty terms\n\n## Coverage\n\n" + " ".join(
    f"Clause {i}: Zephyr part {i} is covered {i + 1} years." for i in range(1, 13)) + "\n"
CORPUS = {**SMALL_CORPUS, "policies/warranty.md": LONG,
          # The same paragraph in a second document: kept once, cited on both.
          "support/hours-copy.txt": SMALL_CORPUS["support/hours.txt"]}


def settings_for(tmp, **extra):
    from ingest_platform.config import load_settings

    source = make_corpus(tmp / "src", CORPUS)
    return load_settings(REPO / "tests" / "empty.toml", home=str(tmp / "state"), sources=[{
        "name": "docs", "path": str(source), "access_groups": ["public"],
        "access_rules": [{"pattern": "hr/**", "groups": ["hr"]}]}],
        chunking={"max_tokens": 48, "overlap_tokens": 16}, **extra)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    s = settings_for(tmp_path_factory.mktemp("serving"))
    pipeline.run_all(s)
    return s


@pytest.fixture()
def retriever(built):
    return Retriever(settings=built)


# ---- trace ids ----------------------------------------------------------------------------------


def test_every_answer_has_a_trace_id_that_finds_its_trace(built, retriever):
    first = retriever.search("refund window annual plans", 3)
    assert traces.TRACE_ID.match(first.trace_id)
    record = traces.find(built.state, first.trace_id)
    assert record["query"] == "refund window annual plans" and record["error"] is None
    assert record["hit_doc_ids"] == [h.doc_id for h in first.hits]
    assert record["index_version"] == first.index_version
    assert 0 < record["top_similarity"] <= 1 and record["top_similarity"] == first.top_similarity
    assert first.to_json()["trace_id"] == first.trace_id

    again = retriever.search("refund window annual plans", 3)  # from the result cache: its own trace
    assert again.cached and again.trace_id != first.trace_id
    assert traces.find(built.state, again.trace_id)["cached"] is True


def test_refused_queries_are_traced_with_their_error(built, retriever):
    before = {r["trace_id"] for r in traces.read(built.state)}
    with pytest.raises(QueryError):
        retriever.search("   ", 3)
    (new,) = [r for r in traces.read(built.state) if r["trace_id"] not in before]
    assert new["error_kind"] == "refused" and "empty" in new["error"] and new["hit_ids"] == []


def test_unknown_or_malformed_trace_ids_are_refused_clearly(built):
    with pytest.raises(traces.TraceError, match="not a trace id"):
        traces.find(built.state, "abc")
    with pytest.raises(traces.TraceError, match="unknown trace id"):
        traces.find(built.state, "20200101-" + "0" * 20)


# ---- context ------------------------------------------------------------------------------------


def test_merge_overlap_joins_a_shared_boundary_once():
    a = "First sentence here. The shared boundary sentence is repeated."
    b = "The shared boundary sentence is repeated. And the next one follows."
    assert merge_overlap(a, b) == "First sentence here. The shared boundary sentence is repeated. And the next one follows."
    assert merge_overlap(a, "Nothing in common with the other text at all.") is None


@pytest.mark.parametrize("budget", [40, 120, 400])
def test_context_fits_the_budget_in_model_tokens(retriever, budget):
    ctx = retriever.context("Zephyr warranty part number defects", max_tokens=budget)
    count = tokenizer_counter(DEFAULT_MODEL)
    assert ctx.passages and ctx.tokens == count([ctx.text])[0] <= budget
    for i, p in enumerate(ctx.passages, 1):
        assert p.n == i and p.block() in ctx.text and p.citation.source_uri.startswith("file://")
        assert p.block().startswith(f"[{i}] {p.doc_id}")
        assert ctx.text.count(f"[{i}] ") == 1


def test_context_merges_overlapping_chunks_and_drops_duplicates(retriever):
    ctx = retriever.context("Zephyr warranty clause years", max_tokens=2000, k=30)
    warranty = [p for p in ctx.passages if p.doc_id.endswith("warranty.md")]
    # The section's chunks (which overlap) became one passage with each clause once.
    assert len(warranty) == 1 and len(warranty[0].chunk_ids) > 1
    for i in range(1, 13):
        assert warranty[0].text.count(f"Clause {i}:") == 1
    assert ctx.merged >= len(warranty[0].chunk_ids) - 1

    hours = retriever.context("phone support hours Monday to Friday", max_tokens=2000, k=30)
    holders = [p for p in hours.passages if "Phone support is open" in p.text]
    assert len(holders) == 1 and len(holders[0].also_in) == 1  # the copy is cited, not repeated


def test_context_rejects_a_bad_budget(retriever):
    with pytest.raises(QueryError, match="max_tokens"):
        retriever.context("refund", max_tokens=0)


# ---- feedback -----------------------------------------------------------------------------------


def test_feedback_is_appended_with_who_and_when(built, retriever, monkeypatch):
    monkeypatch.setenv("INGEST_PLATFORM_JUDGE", "alice")
    result = retriever.search("refund window annual plans", 3)
    top = result.hits[0].doc_id
    item = retriever.feedback(result.trace_id, doc_id=top, relevant=True, note="exactly this")
    assert item.judge == "alice" and item.retrieved and item.query == "refund window annual plans"
    # A visible document that was not retrieved may be judged too (the answer that was missed).
    missed = retriever.feedback(result.trace_id, doc_id="docs:support/hours.txt", relevant=False, judge="bob")
    assert not missed.retrieved
    stored = [f for f in feedback.load(built.state) if f.trace_id == result.trace_id]
    assert [(f.doc_id, f.relevant, f.judge, f.note) for f in stored] == [
        (top, True, "alice", "exactly this"), ("docs:support/hours.txt", False, "bob", None)]
    assert all(f.at for f in stored)
    lines = feedback.path(built.state).read_text().splitlines()
    assert json.loads(lines[-1])["judge"] == "bob"  # appended, one line each


def test_feedback_errors_are_one_line_and_specific(built, retriever):
    result = retriever.search("refund window annual plans", 3)
    cases = [
        (("20200101-" + "a" * 20, "docs:policies/refund.md", True), "unknown trace id"),
        (("nonsense", "docs:policies/refund.md", True), "not a trace id"),
        ((result.trace_id, "docs:no/such.md", True), "unknown document 'docs:no/such.md'"),
        ((result.trace_id, "docs:hr/leave.md", True), "not visible to the query's groups"),
        ((result.trace_id, "docs:policies/refund.md", "yes"), "relevant must be True or False"),
    ]
    for (trace_id, doc, relevant), message in cases:
        with pytest.raises(FeedbackError, match=message) as info:
            retriever.feedback(trace_id, doc_id=doc, relevant=relevant)
        assert "\n" not in str(info.value)


def test_cli_query_json_context_and_feedback(built, capsys):
    from .test_cli import cli_main

    home = str(built.state)
    code, out, _ = cli_main(capsys, "query", "refund window", "--home", home, "--json", "--k", "2")
    answer = json.loads(out)
    assert code == 0 and traces.TRACE_ID.match(answer["trace_id"])

    code, out, _ = cli_main(capsys, "query", "Zephyr warranty", "--home", home, "--context", "80")
    assert code == 0 and out.startswith("[1] ")
    code, out, _ = cli_main(capsys, "query", "Zephyr warranty", "--home", home, "--context", "80", "--json")
    assert json.loads(out)["tokens"] <= 80

    code, out, err = cli_main(capsys, "feedback", answer["trace_id"], "--home", home, "--doc",
                              answer["hits"][0]["doc_id"], "--relevant", "yes", "--note", "good", "--json")
    assert code == 0 and json.loads(out)["relevant"] is True
    code, out, err = cli_main(capsys, "feedback", answer["trace_id"], "--home", home, "--doc", "docs:nope",
                              "--relevant", "no")
    assert code == 2 and err.startswith("error: unknown document") and err.count("\n") == 1


# ---- query rewriting ----------------------------------------------------------------------------


def test_glossary_rules_parse_and_expand_whole_words(tmp_path):
    from ingest_platform.rewrite import GlossaryError, GlossaryRewriter

    path = write(tmp_path, "glossary.txt", "# comment\nrefund, money back\nPTO => paid time off, annual leave\n")
    g = GlossaryRewriter(path)
    assert g("Can I get my Money  Back?").keyword == "Can I get my Money  Back? refund"
    assert g("Can I get my Money  Back?").vector == "Can I get my Money  Back?"  # the vector side is untouched
    assert g("how much PTO").keyword == "how much PTO paid time off annual leave"
    assert g("a refund please").keyword == "a refund please money back"
    assert g("paid time off").keyword == "paid time off"  # one-way rules do not run backwards
    assert g("PTOS and moneyback").keyword == "PTOS and moneyback"  # whole words only
    for text, message in [("refund\n", "at least two"), ("a, , b\n", "empty term"), ("# only\n", "no rules")]:
        with pytest.raises(GlossaryError, match=message):
            GlossaryRewriter(write(tmp_path, "bad.txt", text))


def test_rewriters_change_the_keyword_side_and_are_traced(built, tmp_path):
    glossary = write(tmp_path, "glossary.txt", "refund, money back\n")
    plain = Retriever(settings=built, cache_size=0)
    assert not any(h.doc_id.endswith("refund.md") for h in plain.search("money back", 3, mode="keyword").hits)
    s = built.model_copy(update={"query": built.query.model_copy(update={"glossary": str(glossary)})})
    expanded = Retriever(settings=s, cache_size=0).search("money back", 3, mode="keyword")
    assert expanded.hits[0].doc_id == "docs:policies/refund.md"
    assert expanded.rewritten == {"vector": "money back", "keyword": "money back refund"}
    record = traces.find(built.state, expanded.trace_id)
    assert record["query"] == "money back" and record["rewritten"]["keyword"] == "money back refund"

    # A serving app's own rewriter (here a function; in practice backed by its model).
    own = Retriever(settings=built, cache_size=0, rewriter=lambda q: "Zephyr K7 lantern lumens")
    result = own.search("how bright is the big one", 1)
    assert result.hits[0].doc_id == "docs:products/lanterns.md" and result.query == "how bright is the big one"


# ---- speed options: ONNX query encoder, semantic cache, vector depth ----------------------------


def test_onnx_query_encoder_agrees_with_torch_and_serves_the_same_hits(built):
    import numpy as np

    from ingest_platform.query_encoder import get_query_encoder

    onnx = get_query_encoder("all-MiniLM-L6-v2", "cpu", "onnx", str(built.state / "models"))
    torch_ = get_query_encoder("all-MiniLM-L6-v2", "cpu", "torch")
    texts = ["refund window for annual plans", "Zephyr K7 lumens", "x", "parental leave " * 200]
    for text in texts:  # the long one is truncated at the model's 256 word pieces, as torch does
        assert float(np.dot(onnx._encode(text), torch_._encode(text))) >= 0.999
    s = built.model_copy(update={"query": built.query.model_copy(update={"encoder": "onnx"})})
    fast, slow = Retriever(settings=s, cache_size=0), Retriever(settings=built, cache_size=0)
    for text in texts[:2]:
        assert [h.chunk_id for h in fast.search(text, 3).hits] == [h.chunk_id for h in slow.search(text, 3).hits]


def test_semantic_cache_answers_a_rephrased_query_in_the_same_scope_only(built):
    s = built.model_copy(update={"query": built.query.model_copy(update={"semantic_cache_threshold": 0.9})})
    r = Retriever(settings=s)
    first = r.search("refund window for annual plans", 3)
    again = r.search("What is the refund window for annual plans?", 3)
    assert again.cached and [h.chunk_id for h in again.hits] == [h.chunk_id for h in first.hits]
    record = traces.find(built.state, again.trace_id)
    assert record["semantic_cache"]["query"] == "refund window for annual plans"
    assert 0.9 <= record["semantic_cache"]["similarity"] < 1.0
    assert not r.search("phone support opening hours", 3).cached  # another question
    assert not r.search("What is the refund window for annual plans?", 3, groups=["hr"]).cached  # other caller
    assert not r.search("What is the refund window for annual plans?", 2).cached  # other k


def test_vector_candidate_depth_limits_the_vector_side_of_hybrid(built):
    s = built.model_copy(update={"query": built.query.model_copy(update={"vector_candidates": 2})})
    hits = Retriever(settings=s, cache_size=0).search("Zephyr warranty clause", 10).hits
    assert sum(1 for h in hits if h.ranks["vector"] is not None) == 2
    assert sum(1 for h in hits if h.ranks["keyword"] is not None) > 2


def test_in_memory_search_agrees_with_lancedb_on_a_version_with_deltas_and_deletions(tmp_path):
    """Fusion on ids reads the winners' columns by LanceDB row id. After an edit, an addition and
    a deletion (a delta fragment, deleted rows), every hit still matches the LanceDB path."""
    s = settings_for(tmp_path)
    pipeline.run_all(s)
    source = tmp_path / "src"
    write(source, "policies/refund.md", SMALL_CORPUS["policies/refund.md"] + "\nStore credit never expires.\n")
    write(source, "products/lamps.md", "# Lamp catalogue\n\nThe Zephyr K9 lamp is rated IP68 and has a five year warranty.\n")
    (source / "support/hours-copy.txt").unlink()
    pipeline.run_all(s)
    table = pipeline.index_store(s).checkout(pipeline.index_store(s).version_of("production"))
    fragments = table.to_lance().get_fragments()
    assert len(fragments) > 1 and sum(f.num_deletions for f in fragments) > 0

    def retriever(limit: int) -> Retriever:
        q = s.query.model_copy(update={"memory_search_max_rows": limit, "vector_candidates": 3})
        return Retriever(settings=s.model_copy(update={"query": q}), cache_size=0, trace=False)

    memory, disk = retriever(100_000), retriever(0)
    for text in ("store credit refund", "Zephyr warranty", "phone support hours", "parental leave"):
        a, b = memory.search(text, 8).hits, disk.search(text, 8).hits
        assert a and [{**h.to_json(), "score": None} for h in a] == [{**h.to_json(), "score": None} for h in b]
    assert memory._pin().memory is not None


def test_in_memory_vector_search_returns_what_lancedb_returns(built):
    """The in-memory path (small versions) and LanceDB's search give the same rows, distances and
    prefilter, for every caller and filter; past ``memory_search_max_rows`` LanceDB answers. The
    in-memory path fuses on ids and scores and reads the winners' columns from memory: every field
    of every hit (text, citation, guard fields) is what the LanceDB path returns."""
    from ingest_platform.query import _MemoryVectors

    def retriever(limit: int, vector_candidates: int | None = None) -> Retriever:
        q = built.query.model_copy(update={"memory_search_max_rows": limit, "vector_candidates": vector_candidates})
        return Retriever(settings=built.model_copy(update={"query": q}), cache_size=0, trace=False)

    memory, disk = retriever(100_000), retriever(0)
    cases = [("refund window for annual plans", None, None), ("parental leave", ["hr"], None),
             ("parental leave", None, None), ("Zephyr part warranty", ["public", "hr"], {"format": "md"}),
             ("opening hours", None, {"format": ["txt"]}), ("nothing like this anywhere", ["nobody"], None)]
    # Two vector candidates: most hybrid hits are then found by BM25 alone.
    for a_retriever, b_retriever in ((memory, disk), (retriever(100_000, 2), retriever(0, 2))):
        for text, groups, filters in cases:
            for mode in ("vector", "hybrid"):
                a = a_retriever.search(text, 8, mode=mode, groups=groups, filters=filters).hits
                b = b_retriever.search(text, 8, mode=mode, groups=groups, filters=filters).hits
                assert [h.chunk_id for h in a] == [h.chunk_id for h in b], (text, groups, filters, mode)
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)  # float32 sums
                assert [{**h.to_json(), "score": None} for h in a] == [{**h.to_json(), "score": None} for h in b]
    assert isinstance(memory._pin().memory, _MemoryVectors) and disk._pin().memory is None
    hr = memory.search("parental leave", 8, mode="vector", groups=["hr"]).hits
    assert any(h.doc_id.endswith("hr/leave.md") for h in hr)
    assert not any(h.doc_id.endswith("hr/leave.md") for h in memory.search("parental leave", 8, mode="vector").hits)
