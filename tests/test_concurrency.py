"""Concurrency, access control and hostile queries (issue 7).

- Readers in threads and in separate (spawned) processes query without pause while the index is
  rebuilt, promoted, rolled back and cleaned up: no errors, every answer from one consistent
  version, and every reader moves on to the newest production version by itself.
- Access control as a property, with the result cache on and off, in every mode, with group names
  and filter values made of quotes, SQL and FTS syntax; default deny for chunks without groups.
- Hostile query text and ``k`` values give results or a ``QueryError``, never an internal error.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from ingest_platform import promotion, faults, pipeline
from ingest_platform.query import QueryError, Retriever

from .conftest import make_corpus, make_settings, write

MODES = ("keyword", "vector", "hybrid")

# ---------------------------------------------------------------------------------------------
# Readers during re-index, promotion, rollback and cleanup
# ---------------------------------------------------------------------------------------------

STATUS_DOC = "docs:status.md"
QUESTION = "current release marker"
MARKERS = ("ALPHA", "BRAVO", "CHARLIE", "DELTA")


def status_text(marker: str) -> str:
    return f"# Release status\n\nThe current release marker is {marker}. Ship it when the checks pass.\n"


def read_loop(target, out_path: str, stop_path: str) -> None:
    """Query until ``stop_path`` exists, one JSON line per answer. ``target`` is a shared
    ``Retriever`` (threads) or a home folder (a process builds its own, as a serving app would)."""
    retriever = target if isinstance(target, Retriever) else Retriever(home=target, cache_size=0, trace=False)
    i = 0
    with open(out_path, "a") as out:
        while not os.path.exists(stop_path):
            mode = MODES[i % len(MODES)]
            i += 1
            try:
                res = retriever.search(QUESTION, 3, mode=mode, filters={"doc_id": STATUS_DOC})
                line = {"v": res.index_version, "texts": [h.text for h in res.hits], "mode": mode}
            except Exception as exc:  # noqa: BLE001 - every error is a finding
                line = {"error": repr(exc), "mode": mode}
            out.write(json.dumps(line) + "\n")
            out.flush()
            time.sleep(0.05)  # leave the 2 cores some room for the writer


def _answers(path: Path) -> list[dict]:
    """The complete lines so far (a reader may be half-way through writing the last one)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_readers_in_threads_and_processes_during_reindex_promote_rollback_cleanup(tmp_path):
    root = make_corpus(tmp_path / "src")
    write(root, "status.md", status_text("ALPHA"))
    # Retention 0: every run also prunes old versions while the readers read.
    s = make_settings(tmp_path, root, index={"retention_days": 0})
    pipeline.run_all(s)
    store = pipeline.index_store(s)
    markers = {store.version_of("production"): "ALPHA"}

    out = tmp_path / "readers"
    out.mkdir()
    stop = out / "STOP"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=read_loop, args=(str(s.home), str(out / f"proc-{i}.jsonl"), str(stop)))
             for i in range(2)]
    shared = Retriever(settings=s, cache_size=0, trace=False)
    threads = [threading.Thread(target=read_loop, args=(shared, str(out / f"thread-{i}.jsonl"), str(stop)))
               for i in range(2)]  # two threads share one Retriever, as a web server's workers would
    names = [f"proc-{i}" for i in range(2)] + [f"thread-{i}" for i in range(2)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    try:
        _wait_until(lambda: all(_answers(out / f"{n}.jsonl") for n in names), 180, "every reader to answer")

        def settle():  # let every reader answer a few times from the current state
            counts = {n: len(_answers(out / f"{n}.jsonl")) for n in names}
            _wait_until(lambda: all(len(_answers(out / f"{n}.jsonl")) >= counts[n] + 3 for n in names),
                        60, "readers to keep answering")

        for marker in ("BRAVO", "CHARLIE"):
            write(root, "status.md", status_text(marker))
            pipeline.run_all(s)  # rebuild + promote while readers run
            markers[store.version_of("production")] = marker
            settle()
        event = promotion.rollback(s, why="concurrency test")
        assert markers[event.to_version] == "BRAVO"
        settle()
        promotion.promote(s, why="roll forward")  # candidate: CHARLIE again
        settle()
        # Untag every earlier rollback target and drop every untagged version under the readers.
        pruned = store.cleanup(older_than=timedelta(0), keep_promoted=1)
        assert pruned["old_versions"] > 0, pruned
        settle()
        write(root, "status.md", status_text("DELTA"))
        pipeline.run_all(s)
        newest = store.version_of("production")
        markers[newest] = "DELTA"
        # Each reader picks up the newest production version by itself, without a restart.
        _wait_until(lambda: all(any(a.get("v") == newest for a in _answers(out / f"{n}.jsonl")) for n in names),
                    60, "every reader to see the newest production version")
        settle()
    finally:
        stop.touch()
        for t in threads:
            t.join(60)
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]

    for name in names:
        answers = _answers(out / f"{name}.jsonl")
        errors = [a for a in answers if "error" in a]
        assert not errors, (name, errors[:3])
        for a in answers:
            assert a["v"] in markers, (name, a)  # only versions that were production at some point
            assert a["texts"], (name, a)
            for text in a["texts"]:
                # One version per answer: its own marker, and no other version's.
                assert markers[a["v"]] in text, (name, a)
                assert not any(m in text for m in MARKERS if m != markers[a["v"]]), (name, a)
        seen = [a["v"] for a in answers]
        first_newest = seen.index(newest)
        assert set(seen[first_newest:]) == {newest}, (name, seen[first_newest:])
        assert {a["mode"] for a in answers} == set(MODES)


def test_a_reader_caught_between_history_record_and_tag_move_still_moves_on(tmp_path, monkeypatch):
    """Promotion records its move, then moves the tag. A query landing in between sees the new
    history but the old tag; the reader must look again, not settle on the old version."""
    root = make_corpus(tmp_path / "src")
    write(root, "status.md", status_text("ALPHA"))
    s = make_settings(tmp_path, root)
    pipeline.run_all(s)
    store = pipeline.index_store(s)
    old = store.version_of("production")
    r = Retriever(settings=s, cache_size=0, trace=False)
    assert r.search(QUESTION, 1, mode="keyword").index_version == old
    write(root, "status.md", status_text("BRAVO"))
    pipeline.run_all(s, promote=False)
    between = []
    monkeypatch.setattr(faults, "point", lambda name: between.append(r.search(QUESTION, 1, mode="keyword"))
                        if name == "promote:recorded" else None)
    new = promotion.promote(s, why="race", force_reason="test: gates not under test").to_version
    assert [res.index_version for res in between] == [old]  # the tag had not moved yet
    res = r.search(QUESTION, 1, mode="keyword")
    assert res.index_version == new and "BRAVO" in res.hits[0].text


def test_writes_keep_working_once_production_is_older_than_retention(tmp_path):
    """lancedb refuses to prune at all when a tagged version is older than the cutoff; a quiet
    week (retention_days) must not make every later run fail at the index stage."""
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root, index={"retention_days": 0})
    pipeline.run_all(s)
    store = pipeline.index_store(s)
    first = store.version_of("production")
    time.sleep(1.1)
    write(root, "status.md", status_text("BRAVO"))
    assert pipeline.run_all(s)["index"]["wrote"]
    assert store.version_of("production") != first
    assert promotion.rollback(s, why="tagged versions survive pruning").to_version == first
    r = Retriever(settings=s, trace=False)
    assert r.search("refund window annual plan", 1).index_version == first
    assert store.cleanup(older_than=timedelta(0))["versions_left"] >= 2


# ---------------------------------------------------------------------------------------------
# Access control
# ---------------------------------------------------------------------------------------------

HOSTILE_GROUPS = [
    "public", "hr", "finance", "it's", 'say "hi"', "x') OR 1=1 --", "' OR ''='", "hr]) OR TRUE OR ([",
    "a' || 'b", "%", "_", "*", "text:refund*", "NOT public", "public OR hr", "(hr)", "\\", "ünïcödé 組",
]
CALLER_EXTRAS = ["PUBLIC", "public ", " hr", "pub", "publi_", "nobody", "", "hr,public"]
WORDS = ["lantern", "battery", "refund", "warranty", "solar", "charger", "voltage", "gasket"]


def _acl_records(path: Path, assignment: list[list[str] | None]) -> dict[str, set[str]]:
    """One record per entry; ``None`` leaves out ``access_groups`` (the source default applies)."""
    lines, allowed = [], {}
    for i, groups in enumerate(assignment):
        metadata = {"topic": WORDS[i % len(WORDS)]} | ({} if groups is None else {"access_groups": groups})
        lines.append(json.dumps({
            "_id": f"d{i}", "title": f"Document {i} about {WORDS[i % len(WORDS)]}",
            "text": f"{WORDS[i % len(WORDS)]} notes number {i} about {WORDS[(i + 3) % len(WORDS)]} and refunds",
            "metadata": metadata,
        }))
        allowed[f"r:d{i}"] = set(groups or [])
    path.write_text("\n".join(lines))
    return allowed


def _check_no_leak(retrievers, allowed, caller, query, mode, filters=None) -> int:
    seen = 0
    caller_set = set(caller.split(",") if isinstance(caller, str) else caller)
    caller_set.discard("")
    for r in retrievers:
        for _repeat in range(2 if r._cache_size else 1):  # the repeat is answered from the cache
            res = r.search(query, 50, mode=mode, groups=caller, filters=filters)
            for hit in res.hits:
                assert allowed[hit.doc_id] & caller_set, (hit.doc_id, allowed[hit.doc_id], caller, mode)
                if filters:
                    assert hit.doc_id in filters.get("doc_id", [hit.doc_id]), (hit.doc_id, filters)
            seen += len(res.hits)
    return seen


@pytest.fixture(scope="module")
def acl_index(tmp_path_factory):
    """A fixed index of 40 records with seeded random groups (hostile names, empty lists, and no
    groups at all), for the many-example properties below."""
    tmp = tmp_path_factory.mktemp("acl-fixed")
    rng = random.Random(11)
    assignment = []
    for i in range(40):
        if i % 10 == 0:
            assignment.append([] if i % 20 == 0 else None)  # default deny, both ways
        else:
            assignment.append(rng.sample(HOSTILE_GROUPS, rng.randint(1, 3)))
    allowed = _acl_records(tmp / "records.jsonl", assignment)
    s = make_settings(tmp, tmp, sources=[{"name": "r", "path": str(tmp / "records.jsonl")}])
    pipeline.run_all(s)
    cached = Retriever(settings=s, trace=False)
    uncached = Retriever(settings=s, trace=False, cache_size=0)
    return {"settings": s, "allowed": allowed, "retrievers": (cached, uncached)}


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    caller=st.lists(st.sampled_from(HOSTILE_GROUPS + CALLER_EXTRAS), max_size=4, unique=True),
    as_string=st.booleans(),
    query=st.sampled_from(WORDS + ["notes number", "document", "refunds", '"notes number"', "refund OR 1=1"]),
    mode=st.sampled_from(MODES),
)
def test_property_no_chunk_outside_the_callers_groups(acl_index, caller, as_string, query, mode):
    if as_string:  # "a,b" is how the CLI passes groups; a name containing a comma cannot be sent so
        assume(all("," not in g for g in caller))
        caller = ",".join(caller)
    _check_no_leak(acl_index["retrievers"], acl_index["allowed"], caller, query, mode)


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    caller=st.lists(st.sampled_from(HOSTILE_GROUPS), min_size=1, max_size=3, unique=True),
    doc_ids=st.lists(st.sampled_from([f"r:d{i}" for i in range(40)] + [
        "r:d1' OR '1'='1", "r:d%", "r:d_", "') OR TRUE --", 'r:d1" OR "1"="1', "r:d1\\"]), min_size=1, max_size=3),
    mode=st.sampled_from(MODES),
)
def test_property_filter_values_cannot_widen_the_filter(acl_index, caller, doc_ids, mode):
    _check_no_leak(acl_index["retrievers"], acl_index["allowed"], caller, "notes number", mode,
                   filters={"doc_id": doc_ids})


def test_group_and_filter_syntax_is_literal(acl_index):
    allowed = acl_index["allowed"]
    for r in acl_index["retrievers"][1:]:  # uncached: every call really searches
        for mode in MODES:
            # Each hostile name matches exactly the documents that carry that very name.
            for g in HOSTILE_GROUPS:
                got = {h.doc_id for h in r.search("notes number", 50, mode=mode, groups=[g]).hits}
                assert got <= {d for d, gs in allowed.items() if g in gs}, (g, mode)
                if mode == "keyword":  # every document matches "notes number": all are found
                    assert got == {d for d, gs in allowed.items() if g in gs}, (g, got)
            # Documents with no groups (an empty list or none given) are visible to nobody.
            everyone = HOSTILE_GROUPS + CALLER_EXTRAS
            got = {h.doc_id for h in r.search("notes number", 50, mode=mode, groups=everyone).hits}
            assert got == {d for d, gs in allowed.items() if gs}, mode
            for bad in ([1], [None], ["ok", 2], 5, 2.5, {"public": 1}, b"public"):
                with pytest.raises(QueryError):
                    r.search("notes", 5, mode=mode, groups=bad)
            for bad_filter in ({"access_groups": "public"}, {"doc_id": []}, {"doc_id": [1]},
                               {"1=1 OR doc_id": "x"}, {"title": None}, "doc_id=x", ["doc_id"],
                               {1: "x", "doc_id": "y"}):
                with pytest.raises(QueryError):
                    r.search("notes", 5, mode=mode, groups=["public"], filters=bad_filter)
            # A NUL cannot be part of a SQL literal; it must be refused, not truncate the filter.
            for nul in ({"groups": ["pub\x00lic"]}, {"filters": {"doc_id": "r:d1\x00"}}):
                try:
                    res = r.search("notes", 5, mode=mode, **{"groups": ["public"], **nul})
                except QueryError:
                    continue
                assert not res.hits, nul


@hsettings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_random_assignments_default_deny_cache_on_and_off(tmp_path_factory, data):
    """Random group assignments (rebuilt per example); an unassigned chunk is visible to nobody
    unless ``default_access_groups`` says otherwise."""
    n = 10
    assignment = data.draw(st.lists(st.one_of(st.none(), st.lists(st.sampled_from(HOSTILE_GROUPS), max_size=3,
                                                                  unique=True)), min_size=n, max_size=n))
    default = data.draw(st.sampled_from([[], ["public"], ["it's"]]), label="default_access_groups")
    tmp = tmp_path_factory.mktemp("acl-random")
    allowed = _acl_records(tmp / "records.jsonl", assignment)
    for i, groups in enumerate(assignment):
        if groups is None:
            allowed[f"r:d{i}"] = set(default)
    s = make_settings(tmp, tmp, sources=[{"name": "r", "path": str(tmp / "records.jsonl")}],
                      default_access_groups=default)
    pipeline.run_all(s)
    retrievers = (Retriever(settings=s, trace=False), Retriever(settings=s, trace=False, cache_size=0))
    for _ in range(3):
        caller = data.draw(st.lists(st.sampled_from(HOSTILE_GROUPS + CALLER_EXTRAS), max_size=3, unique=True))
        query = data.draw(st.sampled_from(WORDS + ["notes number"]))
        for mode in MODES:
            _check_no_leak(retrievers, allowed, caller, query, mode)
    # A caller holding every group sees exactly the documents that have any group.
    for r in retrievers:
        got = {h.doc_id for h in r.search("notes number", 50, mode="keyword", groups=HOSTILE_GROUPS).hits}
        assert got == {d for d, gs in allowed.items() if gs}


# ---------------------------------------------------------------------------------------------
# Hostile queries
# ---------------------------------------------------------------------------------------------

FTS_SYNTAX = [
    '"', '"unbalanced phrase', '""', '" "', '"" refund ""', "'", "''", "title:lantern", "text:refund",
    "a:b:c", ":", "(", ")", "(((", ")))", "(refund OR lantern) AND NOT gift", "AND", "OR", "NOT",
    "AND OR NOT", "refund AND", "OR refund", "NOT NOT NOT", "lant*", "*", "**", "*refund", "lant?rn", "?",
    "+refund -gift", "+", "-", "--", "refund~2", "~", "refund^3", "^", '"notes number"~3', "refund^",
    "\\", "\\\\\"", "{[}]", "[refund TO warranty]", "/regex.*/", "field:\"quoted value\"", "&&", "||", "!",
    "refund; DROP TABLE chunks; --", "' OR 1=1 --", "%", "_", "@@version", "${jndi:ldap://x}",
    '"the and of"', "the and of", '"a"', '"refund" "lantern" "battery"', '"""', "refund\"lantern",
]
ODD_TEXT = [
    "refund\x00policy", "\x00\x01\x02refund", "refund\x1b[31mred\x1b[0m", "refund\u200bpolicy", "\ufeffrefund",
    "\u202erefund\u202c", "refund\r\n\tpolicy\x0b\x0c", "\ud800refund", "refund \udfff", "🔦🔋💡", "🔦 refund ☀️",
    "ランタンの保証は二年間です", "مصباح الشحن", "фонарь и батарея", "लालटेन", "e\u0301\u0301\u0301", "Ω≈ç√∫",
    "ﷺ", "𝔯𝔢𝔣𝔲𝔫𝔡", "\u0000" * 10 + "x", "\U0010ffff", "a\u0300" * 50,
]
LONG = [
    "a" * 100_000, "refund " * 15_000, "🔦" * 100_000, '"' * 100_000, "(" * 100_000, "*" * 100_000,
    "AND " * 25_000, "x:" * 50_000, "".join(chr(0x4E00 + i % 20000) for i in range(100_000)),
    " ".join(random.Random(3).choice(WORDS) for _ in range(20_000)),
]


def _ok_or_query_error(r, text, k, mode, **kw):
    try:
        res = r.search(text, k, mode=mode, **kw)
    except QueryError:
        return None
    assert isinstance(res.hits, list)
    return res


def test_hostile_query_text_in_every_mode(acl_index):
    r = acl_index["retrievers"][1]
    for text in FTS_SYNTAX:  # query syntax only matters where BM25 parses the text
        for mode in ("keyword", "hybrid"):
            _ok_or_query_error(r, text, 5, mode, groups=["public", "hr"])
    for text in ODD_TEXT + LONG:  # the tokenizers and the embedding model see these
        for mode in MODES:
            _ok_or_query_error(r, text, 5, mode, groups=["public", "hr"])
    # Empty after cleaning is a clear error, not an empty result or an internal one.
    for text in ("", " ", "\x00", "\u200b\u200b", "\x1b\x07", "\t\n"):
        for mode in MODES:
            with pytest.raises(QueryError):
                r.search(text, 5, mode=mode)
    # Operators are words, not syntax: a query full of them still finds the plain words.
    hits = r.search("(refunds) AND NOT +notes* title:number~2", 5, mode="keyword", groups=["public", "hr"]).hits
    assert hits


def test_hostile_k_values_in_every_mode(acl_index):
    r = acl_index["retrievers"][0]
    max_k = acl_index["settings"].query.max_k
    for mode in MODES:
        for k in (0, -1, -(10**18), 10**9, 10**30, max_k + 1, True, False, 2.5, 1.0, float("nan"),
                  float("inf"), "5", None, [5], b"5"):
            with pytest.raises(QueryError, match="k must"):
                r.search("refund", k, mode=mode)
        for k in (1, max_k):
            assert isinstance(r.search("refund", k, mode=mode, groups=["public", "hr"]).hits, list)
    for bad_mode in ("sql", "", None, "KEYWORD", 1):
        with pytest.raises(QueryError, match="mode"):
            r.search("refund", 5, mode=bad_mode)
    for bad_query in (None, 5, b"refund", ["refund"]):
        with pytest.raises(QueryError):
            r.search(bad_query, 5)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(st.text(max_size=300), st.text(alphabet=st.sampled_from(list('"():*?+-~^!\\[]{}/ ab')),
                                                   max_size=60)),
    k=st.one_of(st.integers(-5, 1200), st.floats(allow_nan=True), st.booleans(), st.none()),
    mode=st.sampled_from(MODES),
    cached=st.booleans(),
)
def test_property_any_query_gives_results_or_a_query_error(acl_index, text, k, mode, cached):
    r = acl_index["retrievers"][0 if cached else 1]
    res = _ok_or_query_error(r, text, k, mode, groups=["public", "hr"])
    if res is not None:
        assert isinstance(k, int) and not isinstance(k, bool) and 1 <= k and len(res.hits) <= k
        assert not (isinstance(k, float) and math.isnan(k))


# ---------------------------------------------------------------------------------------------
# Caches written by parallel steps
# ---------------------------------------------------------------------------------------------


def _append_segments(folder: str, n: int) -> None:
    import pyarrow as pa

    from ingest_platform.storage import SegmentStore

    schema = pa.schema([("key", pa.string()), ("value", pa.string())])
    store = SegmentStore(Path(folder), schema, "key")
    for i in range(n):
        store.append(pa.table({"key": [f"{i}-{j}" for j in range(5000)], "value": ["x" * 40] * 5000}, schema=schema))


def test_opening_a_cache_never_removes_a_parallel_writers_segment(tmp_path):
    """Parse and embed steps run in parallel processes (Dagster's multiprocess executor), each
    opening the parse or embedding cache (``storage.SegmentStore``) while another writes a segment.
    Opening used to remove every temporary file in the folder as "left by a killed writer",
    including the one a live writer was about to rename: that writer's step failed."""
    import pyarrow as pa

    from ingest_platform.storage import SegmentStore

    folder = tmp_path / "cache"
    schema = pa.schema([("key", pa.string()), ("value", pa.string())])
    SegmentStore(folder, schema, "key")
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_append_segments, args=(str(folder), 150))
    writer.start()
    while writer.is_alive():
        SegmentStore(folder, schema, "key")  # another step opening the cache
    writer.join()
    assert writer.exitcode == 0
    assert SegmentStore(folder, schema, "key").keys() >= {f"{i}-0" for i in range(150)}


def test_a_killed_writers_leftover_is_removed_when_a_cache_opens(tmp_path):
    """What a killed writer leaves (a temporary file naming a process that no longer runs) goes the
    next time the cache opens; a live writer's stays (above)."""
    import subprocess
    import sys

    import pyarrow as pa

    from ingest_platform.storage import SegmentStore, _tmp_path

    folder = tmp_path / "cache"
    schema = pa.schema([("key", pa.string()), ("value", pa.string())])
    SegmentStore(folder, schema, "key")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    mine = _tmp_path(folder / "segment-a.parquet")
    leftover = mine.with_name(mine.name.replace(f"-{os.getpid()}.", f"-{dead_pid}."))
    mine.write_bytes(b"half a segment")
    leftover.write_bytes(b"half a segment")
    SegmentStore(folder, schema, "key")
    assert mine.exists() and not leftover.exists()
