"""Bounded disk: maintenance removes what the state no longer needs (old untagged index versions,
rollback targets beyond the last few, cache rows of content that is gone, records of versions that
are gone, old traces) and never what serving or rollback needs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from ingest_platform import pipeline, promotion, state
from ingest_platform.index import PROMOTED_PREFIX
from ingest_platform.maintenance import maintain
from ingest_platform.query import Retriever

from .conftest import SMALL_CORPUS, make_corpus, make_settings, write


def test_maintenance_frees_what_nothing_needs_and_keeps_what_serving_and_rollback_need(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root, index={"keep_promoted": 2},
                      monitoring={"trace_retention_days": 7})
    pipeline.run_all(s)
    for i in range(4):  # four promotions, each with a changed and a removed document
        time.sleep(1.0)  # versions a second apart: what is older than the oldest kept tag can go
        write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", f"{31 + i} days"))
        write(root, f"notes/note-{i}.md", f"# Note {i}\n\nThe depot in town {i} opens at {8 + i} o'clock.\n")
        if i:
            (root / "notes" / f"note-{i - 1}.md").unlink()
        pipeline.run_all(s)
    store = pipeline.index_store(s)
    production = store.version_of("production")
    versions_before = len(store.open().list_versions())
    segments_before = len(list(state.parsed_elements(s.state).glob("segment-*.parquet")))
    old_day = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y%m%d")
    write(state.traces(s.state), f"queries-{old_day}.jsonl", '{"trace_id": "old"}\n')
    write(state.traces(s.state), f"queries-{datetime.now(UTC):%Y%m%d}.jsonl", '{"trace_id": "new"}\n')

    report = maintain(s)

    table = store.open()
    tags = table.tags.list()
    assert store.version_of("production") == production
    assert len([t for t in tags if t.startswith(PROMOTED_PREFIX)]) <= 2 and report.rollback_tags_removed
    # Untagged versions before the oldest kept tag are gone (LanceDB keeps the ones after it, and
    # a few seconds' margin before it).
    assert report.index_versions_removed > 0 and report.index_versions_left == len(table.list_versions()) < versions_before
    # One segment per shard tag is left (a shard's chunk step reads its own).
    after = [p.name.split("-")[1] for p in state.parsed_elements(s.state).glob("segment-*.parquet")]
    assert len(after) == len(set(after)) < segments_before
    assert report.cache_rows_dropped["parsed_elements"] >= 3  # refund.md's old contents, the removed notes
    assert not list(state.traces(s.state).glob(f"queries-{old_day}.jsonl")) and report.trace_files_removed == 1
    assert list(state.traces(s.state).glob("queries-*.jsonl"))  # today's stays
    existing = {v["version"] for v in table.list_versions()}
    assert {int(p.name[1:]) for p in state.gates(s.state).glob("v*")} <= existing
    assert report.bytes_freed > 0 and report.bytes_after == report.bytes_before - report.bytes_freed

    # What serving and rollback need is intact, and the next run reuses the caches.
    hits = Retriever(settings=s, trace=False).search("refund window annual plans", 1).hits
    assert "34 days" in hits[0].text
    assert promotion.rollback(s, why="after maintenance").to_version in existing | {store.version_of("production")}
    again = pipeline.run_all(s)
    assert again["parse"]["parsed"] == 0 and again["embed"]["embedded"] == 0


def _data_files(table) -> set[str]:
    return {d.path for f in table.to_lance().get_fragments() for d in f.data_files()}


def test_a_one_document_run_shares_the_previous_versions_files(tmp_path):
    # Before: every sync ended in LanceDB's optimize(), which rewrote a table under a million rows
    # whole, so each kept version held its own copy of every row (3.4x after 100 runs).
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    pipeline.run_all(s)
    store = pipeline.index_store(s)
    first = store.checkout("production")
    files_first = _data_files(first)
    write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "45 days"))
    out = pipeline.run_all(s)
    assert out["promotion"]["promoted"]
    second = store.checkout("production")
    assert second.version != first.version
    assert files_first < _data_files(second)  # the old files are shared; only the change is new
    assert not any(store.unindexed_rows("production").values())  # and every row is indexed
    hits = Retriever(settings=s, trace=False).search("refund window annual plans", 1, mode="keyword").hits
    assert "45 days" in hits[0].text


def _table(tmp_path, rows: int):
    import lancedb
    import pyarrow as pa

    def part(ids, word):
        return pa.table({"chunk_id": [f"c{i}" for i in ids], "doc_id": [f"d{i}" for i in ids],
                         "text": [f"row {i} of the table mentions {word}" for i in ids]})

    table = lancedb.connect(str(tmp_path / "db")).create_table("t", part(range(rows), "granite"))
    table.create_fts_index("text")
    table.create_scalar_index("doc_id", index_type="BTREE")
    return table, part


def _upsert(table, part) -> None:
    table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(part)


def test_small_fragments_are_compacted_every_few_writes_and_the_base_is_left_alone(tmp_path):
    from ingest_platform.index import settle

    table, part = _table(tmp_path, 200)
    base = _data_files(table)
    done = []
    for i in range(7):  # one new row and one changed row a write
        _upsert(table, part([1000 + i, i], f"basalt{i}"))
        done.append(settle(table, None, max_deltas=3))
        assert not any(table.index_stats(ix.name).num_unindexed_rows for ix in table.list_indices())
        assert len(table.to_lance().get_fragments()) <= 4
    assert done[:3] == ["indexed", "indexed", "compacted"] and done.count("compacted") >= 2, done
    assert base <= _data_files(table)  # 3.5% of its rows deleted: the large fragment stays as written
    for i in range(7):  # every write is searchable, through the merged and the delta segments alike
        found = table.search(f"basalt{i}", query_type="fts").limit(5).to_arrow()["chunk_id"].to_pylist()
        assert sorted(found) == sorted([f"c{1000 + i}", f"c{i}"])
    assert table.count_rows() == 207
    assert table.search("granite", query_type="fts").limit(300).to_arrow().num_rows == 193


def test_removed_rows_leave_the_data_files_at_once(tmp_path):
    from ingest_platform.index import settle

    table, part = _table(tmp_path, 200)
    table.delete("doc_id = 'd7'")
    assert settle(table, None, purge=True) == "purged"
    fragments = table.to_lance().get_fragments()
    assert all(f.metadata.deletion_file is None for f in fragments)  # rewritten without the row
    assert sum(f.metadata.physical_rows for f in fragments) == 199
    assert not table.search("row 7 of", query_type="fts").where("doc_id = 'd7'").limit(5).to_arrow().num_rows


def test_maintenance_prunes_without_rewriting_what_the_kept_versions_hold(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root, index={"keep_promoted": 2})
    pipeline.run_all(s)
    for i in range(3):
        write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", f"{40 + i} days"))
        pipeline.run_all(s)
    store = pipeline.index_store(s)
    latest = store.open().version
    held = _data_files(store.checkout("production"))
    report = maintain(s)
    assert report.index_versions_removed > 0
    assert store.open().version == latest  # no compaction: no new version
    assert _data_files(store.checkout("production")) == held


def test_compaction_keeps_the_base_segment_of_an_index_created_later(tmp_path):
    from ingest_platform.index import settle

    table, part = _table(tmp_path, 200)
    for i in range(2):
        _upsert(table, part([1000 + i], f"basalt{i}"))
        settle(table, None, max_deltas=3)
    table.create_scalar_index("chunk_id", index_type="BTREE")  # one segment while the others have three
    _upsert(table, part([1002, 1003], "basalt2"))
    assert settle(table, None, max_deltas=3) == "compacted"
    stats = {ix.name: table.index_stats(ix.name) for ix in table.list_indices()}
    # Each index: its base segment and one merged segment over everything written since.
    assert {name: s.num_indices for name, s in stats.items()} == dict.fromkeys(stats, 2)
    assert not any(s.num_unindexed_rows for s in stats.values())
