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
