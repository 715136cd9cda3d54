"""The real pipeline into a real LanceDB index: incrementality, promotion, rollback, query modes,
access control, concurrency."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from ingest_platform import promotion, pipeline
from ingest_platform.index import IndexError_
from ingest_platform.query import QueryError, Retriever, search

from .conftest import SMALL_CORPUS, make_corpus, make_settings, write


def build(settings, promote=True):
    return pipeline.run_all(settings, promote=promote)


def index_rows(settings, ref="candidate"):
    table = pipeline.index_store(settings).checkout(ref)
    cols = ["chunk_id", "doc_id", "text", "access_groups", "heading_path", "token_count"]
    rows = table.search().select(cols).limit(None).to_arrow().to_pylist()
    return sorted((r["chunk_id"], r["doc_id"], r["text"], tuple(r["access_groups"]), r["heading_path"]) for r in rows)


@pytest.fixture()
def corpus(tmp_path):
    return make_corpus(tmp_path / "src")


def test_incremental_update_equals_scratch_build(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    first = build(s)
    assert first["index"]["wrote"] and first["index"]["rows"] > 0
    v1 = pipeline.index_store(s).version_of("candidate")

    noop = build(s)
    assert noop["parse"]["parsed"] == 0 and noop["embed"]["embedded"] == 0
    assert not noop["index"]["wrote"] and pipeline.index_store(s).version_of("candidate") == v1

    write(corpus, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "45 days"))
    (corpus / "support" / "hours.txt").unlink()
    write(corpus, "support/returns.md", "# Returns\n\nReturn labels are emailed within two business days.\n")
    os.rename(corpus / "products" / "lanterns.md", corpus / "products" / "catalogue.md")
    second = build(s)
    assert second["index"]["wrote"]
    # The deletions (hours.txt, and lanterns.md renamed away) left production in the fast path,
    # before the candidate was synced; the sync then upserts the new and changed documents.
    assert sorted(second["revoke"]["deleted"]) == ["docs:products/lanterns.md", "docs:support/hours.txt"]
    assert second["index"]["upserted_docs"] == 3 and second["index"]["deleted_docs"] == 0

    scratch = make_settings(tmp_path / "scratch", corpus)
    build(scratch)
    assert index_rows(s) == index_rows(scratch)
    texts = " ".join(r[2] for r in index_rows(s))
    assert "45 days" in texts and "30 days" not in texts and "8:00 to 18:00" not in texts
    assert {r[1] for r in index_rows(s)} == {"docs:policies/refund.md", "docs:support/returns.md",
                                             "docs:products/catalogue.md", "docs:hr/leave.md"}
    # The embedding cache re-used the renamed document's unchanged text.
    assert second["embed"]["cache_hits"] > 0


def test_promotion_and_rollback_change_what_search_returns(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    build(s)
    r = Retriever(settings=s, trace=False)
    assert "30 days" in r.search("refund window annual plan", 1).hits[0].text
    v1 = r.version

    write(corpus, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "60 days"))
    build(s, promote=False)
    # Not promoted yet: serving still answers from the old version.
    assert r.search("refund window annual plan", 1).index_version == v1
    store = pipeline.index_store(s)
    promotion.promote(s, why="test", force_reason="test: gates not under test")
    res = r.search("refund window annual plan", 1)
    assert res.index_version != v1 and "60 days" in res.hits[0].text

    event = promotion.rollback(s, why="bad release")
    assert event.to_version == v1
    res = r.search("refund window annual plan", 1)
    assert res.index_version == v1 and "30 days" in res.hits[0].text
    history = [(e.action, e.to_version) for e in store.history()]
    assert history[-1] == ("rollback", v1) and history[0] == ("promote", v1)
    with pytest.raises(IndexError_, match="nothing to roll back"):
        promotion.rollback(s, why="again")


def test_query_modes_exact_terms_phrases_and_citations(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    build(s)
    r = Retriever(settings=s)
    kw = r.search("Zephyr K7", 3, mode="keyword")
    assert kw.hits and kw.hits[0].doc_id == "docs:products/lanterns.md"
    assert kw.hits[0].ranks == {"keyword": 1}
    phrase = r.search('"pocket lamp"', 5, mode="keyword")
    assert [h.doc_id for h in phrase.hits] == ["docs:products/lanterns.md"]
    assert not r.search('"lamp pocket"', 5, mode="keyword").hits  # order matters in a phrase
    vec = r.search("how long can I get my money back after buying", 2, mode="vector")
    assert vec.hits[0].doc_id == "docs:policies/refund.md"
    hyb = r.search("Aurora Mini rain protection", 3)
    top = hyb.hits[0]
    assert top.doc_id == "docs:products/lanterns.md" and set(top.ranks) == {"vector", "keyword"}
    assert top.citation.source_uri.startswith("file://") and top.citation.title
    # The two short product sections share one chunk (each is under [chunking] min_tokens), which
    # cites the heading both are under.
    assert "Aurora Mini" in top.text and top.citation.heading_path == "Lantern catalogue"
    # Filters narrow, and unknown columns are refused rather than interpolated.
    only_txt = r.search("support", 5, filters={"format": "txt"})
    assert only_txt.hits and all(h.doc_id.endswith(".txt") for h in only_txt.hits)
    with pytest.raises(QueryError):
        r.search("support", 5, filters={"text; DROP TABLE chunks": "x"})


def test_access_groups_are_a_prefilter(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    build(s)
    r = Retriever(settings=s)
    for mode in ("hybrid", "vector", "keyword"):
        public = r.search("parental leave weeks salary", 10, mode=mode)
        assert all(h.doc_id != "docs:hr/leave.md" for h in public.hits)
        hr = r.search("parental leave weeks salary", 10, mode=mode, groups=["hr"])
        assert hr.hits and all(h.doc_id == "docs:hr/leave.md" for h in hr.hits)
        assert not r.search("parental leave", 10, mode=mode, groups=["hr') OR TRUE --"]).hits
        assert not r.search("parental leave", 10, mode=mode, groups=[]).hits


def test_hostile_arguments_give_clear_errors(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    build(s)
    r = Retriever(settings=s)
    for bad in ("", "   ", "\x00\x01"):
        with pytest.raises(QueryError, match="empty"):
            r.search(bad)
    for k in (0, -1, 10**9, 2.5):
        with pytest.raises(QueryError, match="k must"):
            r.search("lantern", k)
    with pytest.raises(QueryError, match="mode"):
        r.search("lantern", mode="sql")
    for text in ('"', "AND OR NOT", "(((", "title:lantern*", "a" * 100_000, "ランタン 🔦", "refund\tpolicy\r\n"):
        for mode in ("hybrid", "vector", "keyword"):
            r.search(text, 3, mode=mode)  # no internal exception


def test_result_cache_and_traces(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    build(s)
    r = Retriever(settings=s)
    a = r.search("lantern lumens", 3)
    b = r.search("lantern lumens", 3)
    assert not a.cached and b.cached and [h.chunk_id for h in a.hits] == [h.chunk_id for h in b.hits]
    import duckdb

    traces = str(s.state / "traces" / "*.jsonl")
    n, version = duckdb.execute(f"select count(*), max(index_version) from read_json_auto('{traces}')").fetchone()
    assert n == 2 and version == a.index_version
    quiet = Retriever(settings=s, trace=False)
    quiet.search("lantern lumens", 3)
    assert duckdb.execute(f"select count(*) from read_json_auto('{traces}')").fetchone()[0] == 2


def test_search_function_and_missing_index_message(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    with pytest.raises(IndexError_, match="ingest-platform run"):
        search("anything", home=s.home)
    build(s)
    res = search("lantern lumens", 2, home=str(s.home))
    assert res.hits and res.index_version == pipeline.index_store(s).version_of("production")


def test_readers_during_rebuild_and_promotion_see_one_version(tmp_path, corpus):
    s = make_settings(tmp_path, corpus)
    write(corpus, "status.md", "# Release status\n\nThe current release marker is ALPHA.\n")
    build(s)
    r = Retriever(settings=s, cache_size=0, trace=False)
    markers: dict[int, str] = {r.version: "ALPHA"}
    errors, answers = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                res = r.search("current release marker", 1, mode="keyword")
                answers.append((res.index_version, res.hits[0].text if res.hits else ""))
            except Exception as exc:  # noqa: BLE001 - any error fails the test
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for marker in ("BRAVO", "CHARLIE"):
            write(corpus, "status.md", f"# Release status\n\nThe current release marker is {marker}.\n")
            build(s)
            markers[pipeline.index_store(s).version_of("production")] = marker
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert answers
    for version, text in answers:
        assert markers.get(version) in text, (version, text)
    assert answers[-1][0] == max(markers)  # picked up the newest production without a restart


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_no_access_leak_in_any_mode(tmp_path_factory, data):
    pool = ["public", "hr", "finance", "it's", 'x") OR 1=1', "eng"]
    n_docs = 12
    assignment = [data.draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)) for _ in range(n_docs)]
    tmp = tmp_path_factory.mktemp("acl")
    records = tmp / "records.jsonl"
    words = ["lantern", "battery", "refund", "warranty", "solar", "charger"]
    records.write_text("\n".join(json.dumps({
        "_id": f"d{i}", "title": f"Document {i}",
        "text": f"{words[i % len(words)]} notes number {i} about {words[(i + 1) % len(words)]}",
        "metadata": {"access_groups": groups},
    }) for i, groups in enumerate(assignment)))
    s = make_settings(tmp, tmp, sources=[{"name": "r", "path": str(records)}])
    build(s)
    r = Retriever(settings=s, trace=False)
    allowed = {f"r:d{i}": set(g) for i, g in enumerate(assignment)}
    for _ in range(4):
        caller = data.draw(st.lists(st.sampled_from(pool + ["nobody"]), max_size=3, unique=True))
        query = data.draw(st.sampled_from(words + ["notes number", "document"]))
        for mode in ("hybrid", "vector", "keyword"):
            res = r.search(query, 20, mode=mode, groups=caller)
            for hit in res.hits:
                assert allowed[hit.doc_id] & set(caller), (hit.doc_id, caller, mode)
    shutil.rmtree(tmp, ignore_errors=True)


def two_language_records(tmp_path):
    """Settings for a record source of one English and one German record (ids r:en and r:de)."""
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in (
        {"_id": "en", "title": "Lantern runtime",
         "text": "The lantern kept most of its rated output until the battery fell below one fifth of its charge."},
        {"_id": "de", "title": "Laufzeit der Laterne",
         "text": "Die Laterne behielt den größten Teil ihrer Leistung, bis der Akku unter ein Fünftel seiner Ladung fiel."},
    )))
    return make_settings(tmp_path, tmp_path, sources=[{"name": "r", "path": str(records), "access_groups": ["public"]}])


def test_records_get_their_language_detected_like_files(tmp_path):
    """Files get their language from unstructured's detector; records (JSONL) must too, or a
    ``language`` filter silently drops every record-sourced document."""
    s = two_language_records(tmp_path)
    build(s)
    chunks = pipeline.load_enriched(s, ["doc_id", "language"]).to_pylist()
    assert {c["doc_id"]: c["language"] for c in chunks} == {"r:en": "eng", "r:de": "deu"}
    r = Retriever(settings=s, trace=False)
    hits = r.search("lantern battery charge", 5, mode="hybrid", groups=["public"], filters={"language": "deu"}).hits
    assert [h.doc_id for h in hits] == ["r:de"]


def test_a_parser_upgrade_reparses_unchanged_documents(tmp_path, monkeypatch):
    """Parsed elements are cached by content hash. If the code that parsed them is not part of the
    key, an upgraded parser (a new unstructured release, or this platform's records getting their
    language detected) never reaches a document whose bytes did not change: its chunks keep what
    the old code made. Here the 'old code' is the platform before records had a language."""
    from ingest_platform import config

    s = two_language_records(tmp_path)
    current = pipeline.record_elements
    old_revision = getattr(config, "PARSER_REVISION", 0) - 1
    with monkeypatch.context() as old:
        old.setattr(pipeline, "record_elements",
                    lambda payload: current(payload).drop_columns(["languages"]).append_column(
                        "languages", pa.nulls(current(payload).num_rows, pa.list_(pa.string()))))
        old.setattr(config, "PARSER_REVISION", old_revision, raising=False)
        build(s)
    languages = lambda: {c["doc_id"]: c["language"] for c in pipeline.load_enriched(s, ["doc_id", "language"]).to_pylist()}
    assert languages() == {"r:en": "und", "r:de": "und"}

    out = build(s)  # the upgraded platform, same bytes
    assert out["parse"]["parsed"] == 2 and out["parse"]["cached"] == 0
    assert {c["document"]: (c["status"], c["reason"]) for c in out["scan"]["changes"]} == {
        d: ("changed", "same content: re-processed for new pipeline settings or parser version") for d in ("r:en", "r:de")}
    assert languages() == {"r:en": "eng", "r:de": "deu"}
    assert out["embed"]["embedded"] == 0  # the texts did not change: their vectors are reused
    hits = Retriever(settings=s, trace=False).search("lantern battery", 5, mode="hybrid", groups=["public"],
                                                      filters={"language": "deu"}).hits
    assert [h.doc_id for h in hits] == ["r:de"]

    again = build(s)  # nothing changed since: nothing is parsed again
    assert again["parse"]["parsed"] == 0
    from ingest_platform.maintenance import maintain

    assert maintain(s).cache_rows_dropped["parsed_elements"] == 2  # the old parser's elements go
    assert {k.split(":")[1] for k in pipeline.parsed_store(s).keys()} == {s.parser_version()}
