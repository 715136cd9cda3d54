"""Sources and the manifest on real folders, record files and fsspec filesystems."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest_platform import manifest as mf
from ingest_platform import pipeline
from ingest_platform.config import SourceConfig
from ingest_platform.sources import make_source, sources_from_paths

from .conftest import SCIFACT, make_corpus, make_settings, need, write


def scan_items(cfg: SourceConfig, default=()):
    return {i.doc_id: i for i in make_source(cfg, list(default)).scan()}


def statuses(settings) -> dict[str, str]:
    t = mf.load_manifest(settings.state)
    return dict(zip(t["doc_id"].to_pylist(), t["status"].to_pylist()))


def test_directory_source_globs_sidecars_and_groups(tmp_path):
    root = make_corpus(tmp_path / "src")
    write(root, "products/lanterns.md.meta.json", json.dumps({"access_groups": ["sales"], "owner": "kim"}))
    write(root, "notes/skip.tmp", "scratch")
    cfg = SourceConfig(name="docs", path=str(root), exclude=["**/*.tmp"], access_groups=["public"],
                       access_rules=[{"pattern": "hr/**", "groups": ["hr", "managers"]}])
    items = scan_items(cfg)
    assert set(items) == {"docs:policies/refund.md", "docs:products/lanterns.md", "docs:support/hours.txt",
                          "docs:hr/leave.md"}  # the sidecar and the excluded file are not documents
    assert items["docs:products/lanterns.md"].access_groups == ["sales"]
    assert items["docs:products/lanterns.md"].metadata == {"owner": "kim"}
    assert items["docs:hr/leave.md"].access_groups == ["hr", "managers"]
    assert items["docs:policies/refund.md"].access_groups == ["public"]


def test_platform_default_groups_apply_when_source_has_none(tmp_path):
    root = make_corpus(tmp_path / "src")
    items = scan_items(SourceConfig(name="d", path=str(root)), default=[])
    assert all(i.access_groups == [] for i in items.values())  # default deny


def test_invalid_sidecar_fails_that_document_closed(tmp_path):
    root = make_corpus(tmp_path / "src")
    write(root, "policies/refund.md.meta.json", "{not json")
    write(root, "support/hours.txt.meta.json", json.dumps({"access_groups": "everyone"}))
    items = scan_items(SourceConfig(name="d", path=str(root)))
    assert "invalid sidecar" in items["d:policies/refund.md"].error
    assert "list of non-empty strings" in items["d:support/hours.txt"].error
    assert items["d:products/lanterns.md"].error is None


def test_symlinks_never_leave_the_root(tmp_path):
    root = make_corpus(tmp_path / "src")
    outside = write(tmp_path, "secret/passwords.txt", "hunter2")
    os.symlink(outside, root / "escape.txt")
    os.symlink(root / "policies" / "refund.md", root / "inside-link.md")
    os.symlink(root, root / "loop")  # a folder link back to the root
    os.symlink(root / "missing.txt", root / "broken.txt")  # dangling, inside the root
    items = scan_items(SourceConfig(name="d", path=str(root)))
    assert "outside the source root" in items["d:escape.txt"].error
    assert items["d:inside-link.md"].error is None
    assert "not followed" in items["d:loop"].error
    assert "unreadable" in items["d:broken.txt"].error
    assert not any(i.read and i.read() == b"hunter2" for i in items.values() if not i.error)


def test_beir_corpus_loads_as_records():
    corpus = need(SCIFACT / "corpus.jsonl")
    items = list(make_source(SourceConfig(name="scifact", path=str(corpus)), ["public"]).scan())
    assert len(items) == 5183
    first = items[0]
    assert first.error is None and first.title and first.doc_id.startswith("scifact:")
    assert json.loads(first.read())["text"]


def test_records_malformed_lines_and_duplicate_ids(tmp_path):
    path = tmp_path / "recs.jsonl"
    path.write_text("\n".join([
        json.dumps({"_id": "a", "title": "Alpha", "text": "first record"}),
        "{broken json",
        json.dumps({"_id": "a", "title": "Alpha again", "text": "duplicate"}),
        json.dumps({"id": "b", "text": "second", "metadata": {"access_groups": ["x"], "year": 2020}}),
        json.dumps({"title": "no id"}),
    ]))
    items = list(make_source(SourceConfig(name="r", path=str(path), access_groups=["public"]), []).scan())
    by_error = [i.error for i in items]
    assert items[0].error is None and items[0].access_groups == ["public"]
    assert "malformed record on line 2" in by_error[1]
    assert "duplicate record id 'a'" in by_error[2]
    assert items[3].access_groups == ["x"] and items[3].metadata == {"year": 2020}
    assert "has no id" in by_error[4]


def test_parquet_records(tmp_path):
    path = tmp_path / "recs.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2"], "title": ["One", "Two"], "text": ["uno", "dos"]}), path)
    items = list(make_source(SourceConfig(name="pq", path=str(path)), ["public"]).scan())
    assert [i.doc_id for i in items] == ["pq:p1", "pq:p2"] and all(i.error is None for i in items)


def test_fsspec_memory_and_file_uris(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a.md", b"# A\n\nalpha text")
    fs.pipe("/corpus/sub/b.txt", b"beta text")
    fs.pipe("/corpus/sub/b.txt.meta.json", json.dumps({"access_groups": ["team"]}).encode())
    items = {i.doc_id: i for i in make_source(SourceConfig(name="m", path="memory:///corpus"), ["public"]).scan()}
    assert set(items) == {"m:a.md", "m:sub/b.txt"}
    assert items["m:sub/b.txt"].access_groups == ["team"] and items["m:a.md"].read() == b"# A\n\nalpha text"
    root = make_corpus(tmp_path / "src")
    file_items = list(make_source(SourceConfig(name="f", path=root.as_uri(), kind="fsspec"), ["public"]).scan())
    assert {i.relpath for i in file_items} == {"policies/refund.md", "products/lanterns.md", "support/hours.txt", "hr/leave.md"}


def test_a_driver_error_on_read_is_an_outage_not_a_crash(tmp_path):
    """fsspec drivers raise their own exceptions (botocore's connection errors are not OSErrors):
    one on reading a document used to escape the scan and stop the run. Now it is an I/O error,
    and the document keeps its last good version."""
    from fsspec.implementations.memory import MemoryFileSystem

    class FlakyFileSystem(MemoryFileSystem):  # a driver whose reads of one file fail like botocore's
        protocol = "flaky"
        store, pseudo_dirs = {}, [""]
        failing = False

        @classmethod
        def _strip_protocol(cls, path):
            return super()._strip_protocol(path.replace("flaky://", "memory://", 1))

        def cat_file(self, path, start=None, end=None, **kwargs):
            if path.endswith("b.md") and self.failing:
                raise RuntimeError("Could not connect to the endpoint URL")
            return super().cat_file(path, start, end, **kwargs)

    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    fs = fsspec.filesystem("flaky")
    fs.pipe("/docs/a.md", b"# A\n\nalpha text")
    fs.pipe("/docs/b.md", b"# B\n\nbeta text")
    s = make_settings(tmp_path, tmp_path, sources=[{"name": "f", "path": "flaky:///docs", "access_groups": ["public"]}])
    pipeline.scan(s)
    fs.pipe("/docs/b.md", b"# B\n\nbeta text, edited")  # changed, so the next scan must read it
    FlakyFileSystem.failing = True
    pipeline.scan(s)
    row = {r["doc_id"]: r for r in mf.load_manifest(s.state).to_pylist()}["f:b.md"]
    assert row["status"] == "unchanged" and "RuntimeError: Could not connect" in row["reason"]
    assert [d["doc_id"] for d in mf.summarize(mf.load_manifest(s.state))["stale"]] == ["f:b.md"]


def test_source_flag_names():
    cfgs = sources_from_paths(["data/sample", "memory:///x/corpus.jsonl", "docs=/tmp/a", "other/sample"])
    assert [c.name for c in cfgs] == ["sample", "corpus", "docs", "sample-2"]
    assert cfgs[1].resolved_kind() == "records"


def test_manifest_statuses_across_add_change_rename_delete(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = pipeline.scan(s, now=t0)
    assert first.counts["new"] == 4 and first.hashed == 4

    again = pipeline.scan(s, now=t0 + timedelta(hours=1))
    assert again.counts["new"] == again.counts["changed"] == again.counts["deleted"] == 0
    assert again.counts["unchanged"] == 4 and again.hashed == 0  # nothing re-read

    write(root, "policies/refund.md", "# Refund policy\n\nRefunds within 45 days.\n")
    write(root, "support/new.txt", "A new document.")
    os.rename(root / "products" / "lanterns.md", root / "products" / "catalogue.md")
    (root / "hr" / "leave.md").unlink()
    edited = pipeline.scan(s, now=t0 + timedelta(hours=2))
    st = statuses(s)
    assert st["docs:policies/refund.md"] == "changed"
    assert {c.document: c.reason for c in edited.changes}["docs:policies/refund.md"] == "content changed"
    assert st["docs:support/new.txt"] == "new" and st["docs:products/catalogue.md"] == "new"
    assert st["docs:products/lanterns.md"] == "deleted" and st["docs:hr/leave.md"] == "deleted"
    assert st["docs:support/hours.txt"] == "unchanged"
    manifest = mf.load_manifest(s.state).to_pylist()
    refund = next(r for r in manifest if r["doc_id"] == "docs:policies/refund.md")
    assert refund["first_seen"] == t0 and refund["last_changed"] == t0 + timedelta(hours=2)

    pipeline.scan(s, now=t0 + timedelta(hours=3))
    st = statuses(s)
    assert "docs:hr/leave.md" not in st  # a deletion is reported once
    assert set(st.values()) == {"unchanged"}


def test_sidecar_edit_changes_the_document(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    pipeline.scan(s)
    side = write(root, "policies/refund.md.meta.json", json.dumps({"access_groups": ["legal"]}))
    os.utime(side, (side.stat().st_mtime + 5, side.stat().st_mtime + 5))
    scan = pipeline.scan(s)
    assert statuses(s)["docs:policies/refund.md"] == "changed"
    assert [(c.document, c.reason) for c in scan.changes] == [("docs:policies/refund.md", "metadata or access changed")]
    row = next(r for r in mf.load_manifest(s.state).to_pylist() if r["doc_id"] == "docs:policies/refund.md")
    assert row["access_groups"] == ["legal"]


def test_unlistable_source_keeps_its_documents(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    pipeline.scan(s)
    os.rename(root, tmp_path / "moved")
    summary = pipeline.scan(s)
    assert summary.errors and "could not be listed" in summary.errors[0]
    assert set(statuses(s).values()) == {"unchanged"}  # not mass-deleted


def test_the_manifest_read_by_column_matches_the_whole_and_fills_columns_an_older_file_lacks(tmp_path):
    """``load_manifest(home, columns)`` (the access check reads three of its eighteen columns):
    the same values as the whole manifest's; a column an older manifest file lacks reads as
    nulls, as the whole read conforms it."""
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path / "home", root)
    pipeline.scan(s)
    whole = mf.load_manifest(s.state)
    cols = ["doc_id", "status", "access_groups"]
    part = mf.load_manifest(s.state, cols)
    assert part.column_names == cols and part.num_rows == whole.num_rows > 0
    assert part.equals(whole.select(cols))

    path = mf.manifest_path(s.state)
    pq.write_table(pq.read_table(path).drop_columns(["access_groups"]), path)  # an older file
    older = mf.load_manifest(s.state, cols)
    assert older["doc_id"].to_pylist() == whole["doc_id"].to_pylist()
    assert older["access_groups"].null_count == older.num_rows
    assert mf.load_manifest(tmp_path / "nowhere", cols).column_names == cols
