"""Production safety (issue 11), against real runs: revocations and deletions reach production in
the run that sees them whatever the gates say; rollback and explicit versions never re-expose them;
old versions holding them are purged; outages never become deletions; one door to production."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest_platform import freshness, gates, pipeline, promotion
from ingest_platform import manifest as mf
from ingest_platform.config import load_settings
from ingest_platform.errors import ConfigError, OperatorOnly, PromotionRefused
from ingest_platform.index import CANDIDATE, PRODUCTION
from ingest_platform.query import Retriever
from ingest_platform.sources import ScanItem, make_source
from ingest_platform.watch import pending_changes

from .conftest import make_corpus, make_settings, write

REFUND = "annual plans full refund within 30 days"
HOURS = "phone support open Monday to Friday"


def served(settings, query: str, groups=("public",), k: int = 5) -> set[str]:
    r = Retriever(settings=settings, trace=False, cache_size=0)
    return {re.split(r"[:/]", h.doc_id)[-1] for h in r.search(query, k, groups=list(groups)).hits}


def revoke_public(root: Path, rel: str, groups=("staff",)) -> None:
    write(root, rel + ".meta.json", json.dumps({"access_groups": list(groups)}))


@pytest.fixture
def built(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    out = pipeline.run_all(s)
    assert out["promotion"]["promoted"], out["promotion"]
    assert "refund.md" in served(s, REFUND)
    return s, root


# ---- the security fast path ------------------------------------------------------------------------


def test_revocation_and_deletion_reach_production_while_a_quality_gate_blocks(tmp_path):
    """A bulk upload of duplicated chunks fails the blocking chunks check, so Dagster builds no
    candidate at all; the revocation and the deletion of the same run still leave production."""
    import definitions

    root = make_corpus(tmp_path / "src")
    cfg = tmp_path / "ingest-platform.toml"
    cfg.write_text(f'home = "{(tmp_path / "state").as_posix()}"\n'
                   f'[[sources]]\nname = "docs"\npath = "{root.as_posix()}"\naccess_groups = ["public"]\n')
    first = definitions.execute_run(config_file=str(cfg))
    assert first.success
    s = load_settings(str(cfg))
    before = pipeline.index_store(s).tags()[PRODUCTION]
    assert "refund.md" in served(s, REFUND) and "hours.txt" in served(s, HOURS)

    revoke_public(root, "policies/refund.md")
    (root / "support" / "hours.txt").unlink()
    for i in range(30):  # the same boilerplate 30 times: duplicate-text ratio far above the gate
        write(root, f"bulk/copy-{i}.md", "# Notice\n\nThis notice is repeated in every uploaded file verbatim.\n")
    second = definitions.execute_run(config_file=str(cfg))
    checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert checks["chunks_quality"] is False
    store = pipeline.index_store(s)
    assert store.tags()[PRODUCTION] != before  # moved, although no candidate was built
    assert store.history()[-1].action == "revoke"
    assert "refund.md" not in served(s, REFUND)  # public lost it now; staff gains it with the next good build
    assert "hours.txt" not in served(s, HOURS, groups=["public", "staff"])
    # The freshness check agrees production no longer serves anything the sources withdrew.
    assert "still serves" not in freshness.production_lag_for(s).reason
    shutil.rmtree(root / "bulk")
    third = definitions.execute_run(config_file=str(cfg))
    assert third.success
    assert "refund.md" in served(s, REFUND, groups=["staff"]) and "refund.md" not in served(s, REFUND)


def test_rollback_and_explicit_versions_never_reexpose(built):
    s, root = built
    store = pipeline.index_store(s)
    v1 = store.tags()[PRODUCTION]
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    assert pipeline.run_all(s)["promotion"]["promoted"]
    revoke_public(root, "policies/refund.md")
    (root / "support" / "hours.txt").unlink()
    pipeline.run_all(s)
    assert "refund.md" not in served(s, REFUND)

    promotion.rollback(s, why="bad release")  # to the revoked copy of the previous release
    event = promotion.rollback(s, why="further back")  # to v1, which still held both
    assert event.based_on == v1 and "revocations applied" in event.why
    assert "refund.md" not in served(s, REFUND) and "hours.txt" not in served(s, HOURS, groups=["public", "staff"])

    event = promotion.promote(s, v1, why="operator pins v1", force_reason="test: old version")
    assert event.based_on == v1 and event.to_version != v1
    assert "refund.md" not in served(s, REFUND)

    # Reading an old version is an operator action.
    with pytest.raises(OperatorOnly):
        Retriever(settings=s, ref=v1)
    old = Retriever(settings=s, ref=v1, operator=True, trace=False)
    assert old.search(REFUND, 3, groups=["public"]).hits  # the operator sees it as it was


def test_purge_removes_every_version_holding_revoked_text(tmp_path):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root, index={"revoked_retention_hours": 0})
    pipeline.run_all(s)
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    pipeline.run_all(s)
    (root / "support" / "hours.txt").unlink()
    out = pipeline.run_all(s)
    assert out["purge"]["versions_pruned"] > 0
    table = pipeline.index_store(s).open()
    for v in table.list_versions():
        table.checkout(v["version"])
        docs = set(table.search().select(["source_uri"]).limit(None).to_arrow()["source_uri"].to_pylist())
        assert not any(d.endswith("hours.txt") for d in docs), f"version {v['version']} still holds it"


def test_freshness_sees_a_deleted_document_still_served(built):
    s, root = built
    (root / "support" / "hours.txt").unlink()
    pipeline.scan(s)
    pipeline.scan(s)  # the manifest forgets the deleted row after one scan
    lag = freshness.production_lag_for(s)
    assert not lag.fresh and "deleted" in lag.reason and "hours" in lag.reason


# ---- one door to production -------------------------------------------------------------------------


def test_promotion_requires_every_gate_the_settings_require(built, tmp_path):
    s, root = built
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps({"id": "q1", "query": REFUND, "relevant_doc_ids": ["x"]}) + "\n")
    gated = s.model_copy(update={"eval": s.eval.model_copy(update={"golden_file": str(golden)})})
    assert promotion.required_gates(gated)[-1] == "eval_gate"
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    pipeline.run_all(s, promote=False)
    candidate = pipeline.index_store(s).tags()[CANDIDATE]
    promotion.judge(s, candidate)  # quality gates only: no golden set in these settings
    with pytest.raises(PromotionRefused, match="eval_gate"):
        promotion.promote(gated, candidate, why="no eval verdict")
    gates.record(s.state, candidate, "eval_gate", False)
    with pytest.raises(PromotionRefused, match="failed: eval_gate"):
        promotion.promote(gated, candidate, why="failed eval")
    event = promotion.promote(gated, candidate, why="operator", force_reason="hotfix approved")
    assert "FORCED: hotfix approved" in event.why


# ---- outages and sudden drops -------------------------------------------------------------------------


def test_empty_or_driverless_source_is_unavailable_not_deleted(built, tmp_path):
    s, root = built
    shutil.move(root, tmp_path / "unmounted")
    root.mkdir()  # the mount point is there, empty
    pipeline.run_all(s)
    assert "refund.md" in served(s, REFUND)
    assert "docs" in pipeline.unavailable_sources(s)
    # A source whose driver is missing is unavailable too, and does not stop the others.
    other = make_corpus(tmp_path / "other", {"a.md": "# Alpha\n\nAlpha text about zebras.\n"})
    s2 = s.model_copy(update={"sources": [*s.sources, *make_settings(tmp_path, other, sources=[
        {"name": "bucket", "path": "s3://no-such-bucket/docs", "access_groups": ["public"]},
        {"name": "other", "path": str(other), "access_groups": ["public"]}]).sources]})
    out = pipeline.run_all(s2)
    assert "bucket" in pipeline.unavailable_sources(s2)
    assert "a.md" in served(s2, "zebras")
    assert out["parse"]["failed"] == 0


def test_unreadable_folder_is_unavailable(tmp_path):
    """os.walk used to swallow this and report every document below as deleted."""
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root)
    pipeline.run_all(s)
    (root / "products").chmod(0)
    try:
        if os.geteuid() == 0:  # root reads anything: drop the capability that lets it
            import subprocess
            import sys

            code = ("import sys; from ingest_platform.sources import make_source; "
                    "from ingest_platform.config import SourceConfig; "
                    f"list(make_source(SourceConfig(name='docs', path={str(root)!r}), []).scan())")
            proc = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                                   sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0 and "setpriv" in proc.stderr and "SourceUnavailable" not in proc.stderr:
                pytest.skip(f"cannot drop privileges here: {proc.stderr.strip()[:200]}")
            assert "SourceUnavailable" in proc.stderr and "products" in proc.stderr
        else:
            pipeline.run_all(s)
            assert "docs" in pipeline.unavailable_sources(s)
            assert "lanterns.md" in served(s, "Zephyr K7 lantern lumens")
    finally:
        (root / "products").chmod(0o755)


def _run_stages(s, before: dict, after: dict | None = None) -> dict:
    """``run_all``'s stages with something done before some of them (a user saving a file mid-run,
    a share dropping) and checked after others, then the candidate judged and promoted through the
    one door. Returns the stages' summaries."""
    from ingest_platform.stages import STAGES

    out = {}
    for stage in STAGES:
        before.get(stage.name, lambda: None)()
        out[stage.name] = stage.run(s, None)
        (after or {}).get(stage.name, lambda: None)()
    candidate = pipeline.index_store(s).tags()[CANDIDATE]
    promotion.judge(s, candidate)
    promotion.promote(s, candidate, why="test")
    return out


def _stages_with(s, between_scan_and_parse) -> dict:
    return _run_stages(s, before={"parse": between_scan_and_parse})


def stale_documents(s) -> dict[str, str]:
    return {d["doc_id"]: d["reason"] for d in mf.summarize(mf.load_manifest(s.state))["stale"]}


def test_a_document_saved_mid_run_keeps_serving_its_last_good_version(built, capsys):
    """It used to be marked failed ("changed between scan and parse") and left the index until the
    next run: a document vanished from search because someone saved it during a run."""
    s, root = built
    refund = root / "policies" / "refund.md"
    refund.write_text(refund.read_text() + "\nStore credit is issued within 5 days.\n")
    out = _stages_with(s, lambda: refund.write_text(refund.read_text() + "\nLoyalty points expire after 2 years.\n"))
    assert out["parse"].failed == 0
    assert "changed between scan and parse" in stale_documents(s)["docs:policies/refund.md"]
    assert "refund.md" in served(s, REFUND)  # the last good version
    assert [d["doc_id"] for d in out["parse"].stale] == ["docs:policies/refund.md"]
    from ingest_platform.cli import main

    capsys.readouterr()
    assert main(["status", "--home", str(s.home), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [d["doc_id"] for d in status["stale"]] == ["docs:policies/refund.md"] and status["failures"] == []
    from checks.document_checks import documents_failed
    from resources import PlatformSettings

    check = documents_failed(platform=PlatformSettings(home=str(s.home)))  # the UI's yellow WARN
    assert not check.passed and check.metadata["documents_stale"].value == 1
    assert "docs:policies/refund.md" in check.description and "last good version" in check.description
    pipeline.run_all(s)  # the next run takes the newest content and the warning goes
    assert "refund.md" in served(s, "loyalty points expire after 2 years")
    assert stale_documents(s) == {}


def test_a_source_lost_between_scan_and_parse_keeps_its_documents(built, tmp_path):
    s, root = built
    lanterns = root / "products" / "lanterns.md"
    lanterns.write_text(lanterns.read_text() + "\n## Nova\n\nThe Nova beacon flashes red twice a second.\n")
    _stages_with(s, lambda: shutil.move(root, tmp_path / "unmounted"))
    assert "unavailable while parsing" in stale_documents(s)["docs:products/lanterns.md"]
    assert "lanterns.md" in served(s, "Zephyr K7 lantern lumens")
    shutil.move(tmp_path / "unmounted", root)
    pipeline.run_all(s)
    assert "lanterns.md" in served(s, "Nova beacon flashes red")
    assert stale_documents(s) == {}


def test_a_read_that_fails_for_the_storage_keeps_the_last_good_version(tmp_path):
    """At the scan, an I/O error, a stale handle or a timeout is the storage's, not the document's:
    the last good row is kept and reported. Permission denied, or groups narrower than the served
    ones, may be a deliberate revocation: the document leaves the index (fail closed)."""
    import errno

    from ingest_platform.sources import is_outage

    s = make_settings(tmp_path, make_corpus(tmp_path / "src"))
    pipeline.scan(s)
    previous = mf.load_manifest(s.state)
    old = {r["doc_id"]: r for r in previous.to_pylist()}
    doc = "docs:policies/refund.md"

    def listing(error: OSError, groups=("public",)) -> list[ScanItem]:
        def read() -> bytes:
            raise error

        return [ScanItem(doc_id=r["doc_id"], source=r["source"], source_uri=r["source_uri"], relpath=r["relpath"],
                         size=r["size"] + (r["doc_id"] == doc), mtime=r["mtime"], format_hint=r["format"],
                         access_groups=list(groups if r["doc_id"] == doc else r["access_groups"]), title=r["title"],
                         metadata=json.loads(r["metadata_json"]), read=read if r["doc_id"] == doc else None,
                         content_sha256=None if r["doc_id"] == doc else r["content_sha256"])
                for r in old.values()]

    def row(items) -> dict:
        table, _ = mf.reconcile(previous, items, pipeline_fingerprint=s.pipeline_fingerprint())
        return next(r for r in table.to_pylist() if r["doc_id"] == doc)

    for code in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EBUSY):
        assert is_outage(OSError(code, os.strerror(code)))
        kept = row(listing(OSError(code, os.strerror(code))))
        assert kept["status"] == "unchanged" and kept["doc_version"] == old[doc]["doc_version"], kept
        assert os.strerror(code) in kept["reason"] and "last good version" in kept["reason"]
    for error in (PermissionError(errno.EACCES, "Permission denied"), FileNotFoundError(errno.ENOENT, "gone")):
        assert not is_outage(error)
        assert row(listing(error))["status"] == "failed"
    narrowed = row(listing(OSError(errno.EIO, "Input/output error"), groups=("staff",)))
    assert narrowed["status"] == "failed", "an outage must not keep serving a document whose groups narrowed"
    # A file the storage fails to stat still has its groups resolved (rules, sidecar), to compare.
    source = make_source(s.sources[0], s.default_access_groups)
    refund = source.root / "policies" / "refund.md"
    assert source._outage(refund, "policies/refund.md", "unreadable: OSError: Input/output error").access_groups == ["public"]
    revoke_public(source.root, "policies/refund.md")
    assert source._outage(refund, "policies/refund.md", "unreadable").access_groups == ["staff"]
    write(source.root, "policies/refund.md.meta.json", "{not json")
    assert source._outage(refund, "policies/refund.md", "unreadable").access_groups == []  # fail closed


def _failures(s) -> dict[str, str]:
    return {d["doc_id"]: d["reason"] for d in mf.summarize(mf.load_manifest(s.state))["failures"]}


def _crash_parsers(s, monkeypatch, crash: bool) -> None:
    """Every parser worker dies on its first document (``faults``), or none does. ``run_all`` keeps
    its pool while the parse settings stay the same: a new worker count starts new workers, which
    see the environment as it is now (the count is not part of the parse cache's key)."""
    from ingest_platform import faults

    if crash:
        monkeypatch.setenv(faults.ENV, "parse:worker")
    else:
        monkeypatch.delenv(faults.ENV)
    s.parsing.workers = 1 if s.parsing.workers > 1 else 2


def _wait_until_due(reason: str) -> None:
    time.sleep(max(0.0, (mf.retry_due(reason) - datetime.now(UTC)).total_seconds()))


def test_a_parser_that_crashed_is_tried_again_before_the_failure_sticks(built, monkeypatch):
    """A parse that timed out or whose worker died says as much about the machine (a busy host, the
    OOM killer) as about the document. It used to be cached as the document's failure for good: the
    edited document left the index and the new one never arrived, until someone changed the limits."""
    s, root = built
    s.parsing.retry_after_s = 3600
    refund = root / "policies" / "refund.md"
    refund.write_text(refund.read_text() + "\nStore credit is issued within 5 days.\n")
    write(root, "policies/gift-cards.md", "# Gift cards\n\nGift cards never expire and work in every store.\n")
    _crash_parsers(s, monkeypatch, True)
    out = pipeline.run_all(s)
    assert out["parse"]["parsed"] == 0
    reason = stale_documents(s)["docs:policies/refund.md"]
    assert re.search(r"parser crashed \(SIGKILL.*attempt 1 of 3; tried again from ", reason)
    due = mf.retry_due(reason)
    assert 3590 < (due - datetime.now(UTC)).total_seconds() <= 3601
    assert "refund.md" in served(s, REFUND)  # the last good version
    assert "attempt 1 of 3" in _failures(s)["docs:policies/gift-cards.md"]  # nothing to keep: not served yet
    # Not tried again before it is due: a load spike of a few minutes cannot use up every attempt.
    _crash_parsers(s, monkeypatch, False)
    assert pending_changes(s).retry == {}
    out = pipeline.run_all(s)
    assert out["parse"]["parsed"] == 0 and stale_documents(s)["docs:policies/refund.md"] == reason
    # Once due, the source-change sensor requests the run that tries them again (nothing changed on disk).
    s.parsing.retry_after_s = 0
    out = pipeline.run_all(s)  # the machine is fine again: both are parsed, nothing was cached as failed
    assert out["parse"]["parsed"] == 2
    assert "refund.md" in served(s, "store credit is issued within 5 days")
    assert "gift-cards.md" in served(s, "gift cards never expire")
    assert stale_documents(s) == {} and _failures(s) == {} and pending_changes(s).count == 0


def test_a_parser_crash_sticks_after_the_last_attempt(tmp_path, monkeypatch):
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root, parsing={"attempts": 2, "retry_after_s": 0})
    pipeline.run_all(s)
    write(root, "policies/gift-cards.md", "# Gift cards\n\nGift cards never expire.\n")
    _crash_parsers(s, monkeypatch, True)
    pipeline.run_all(s)
    assert "attempt 1 of 2" in _failures(s)["docs:policies/gift-cards.md"]
    _wait_until_due(_failures(s)["docs:policies/gift-cards.md"])  # due times are whole seconds
    assert list(pending_changes(s).retry) == ["docs:policies/gift-cards.md"]  # due: the sensor asks for it
    pipeline.run_all(s)
    reason = _failures(s)["docs:policies/gift-cards.md"]
    assert "parser crashed" in reason and "2 attempts" in reason and "attempt" not in reason.split("2 attempts")[1]
    assert pending_changes(s).count == 0  # the last attempt: the sensor requests no more runs for it
    _crash_parsers(s, monkeypatch, False)
    out = pipeline.run_all(s)  # now the document's own failure: cached, not parsed again
    assert out["parse"]["parsed"] == 0 and "2 attempts" in _failures(s)["docs:policies/gift-cards.md"]
    s.parsing.timeout_s += 1  # new limits: tried again
    pipeline.run_all(s)
    assert _failures(s) == {} and "gift-cards.md" in served(s, "gift cards never expire")


def test_revocations_made_during_a_long_run_leave_production_before_it_ends(tmp_path, capsys):
    """A parser or model upgrade makes a run that parses and embeds for hours while it holds the
    writer lock; a deletion or revoked group made after its scan waited for the next run. Now the
    long stages list the sources again as they go, and the run's own candidate, built from the
    older manifest, does not bring back what they saw revoked."""
    root = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, root, safety={"revocation_check_s": 0.001})
    pipeline.run_all(s)
    assert {"refund.md", "lanterns.md"} <= served(s, REFUND) | served(s, "Zephyr K7 lantern")
    assert "hours.txt" in served(s, HOURS)
    for rel in ("policies/refund.md", "products/lanterns.md"):  # edited: work for parse and embed
        (root / rel).write_text((root / rel).read_text() + "\nRevised in spring.\n")
    store = pipeline.index_store(s)

    def revoked_while_parsing():
        revoke_public(root, "policies/refund.md")
        (root / "support" / "hours.txt").unlink()

    def left_during_parse():  # long before the run ends, whatever its gates decide
        assert "refund.md" not in served(s, REFUND) and "hours.txt" not in served(s, HOURS, ("public", "staff"))
        assert store.history()[-1].action == "revoke" and "at parse" in store.history()[-1].why

    def left_during_embed():
        assert "lanterns.md" not in served(s, "Zephyr K7 lantern")

    _run_stages(s, before={"parse": revoked_while_parsing, "embed": lambda: revoke_public(root, "products/lanterns.md")},
                after={"parse": left_during_parse, "embed": left_during_embed})
    assert pipeline.index_store(s).history()[-1].action == "promote"  # the candidate had them...
    assert "refund.md" not in served(s, REFUND) and "lanterns.md" not in served(s, "Zephyr K7 lantern")
    assert "hours.txt" not in served(s, HOURS, ("public", "staff"))  # ...and still serves none of them
    assert promotion.revoked_since_scan(s)["deleted"] == ["docs:support/hours.txt"]
    from ingest_platform.cli import main

    capsys.readouterr()
    assert main(["status", "--home", str(s.home)]) == 0  # the manifest does not know them yet: status says
    assert re.search(r"revoked during the last run.*deleted docs:support/hours.txt.*narrowed docs:policies/refund.md",
                     capsys.readouterr().out)
    pipeline.run_all(s)  # the next scan writes it all into the manifest
    assert promotion.revoked_since_scan(s)["deleted"] == [] and promotion.revoked_since_scan(s)["narrowed"] == {}
    assert "refund.md" in served(s, REFUND, ("staff",)) and "refund.md" not in served(s, REFUND)
    assert "hours.txt" not in served(s, HOURS, ("public", "staff"))


def test_a_check_during_a_run_takes_no_outage_or_mass_drop_for_a_deletion(tmp_path):
    from ingest_platform import revocation_check

    files = {f"notes/n{i}.md": f"# Note {i}\n\nNote number {i} mentions the word kumquat{i}.\n" for i in range(12)}
    root = make_corpus(tmp_path / "src", files)
    s = make_settings(tmp_path, root, safety={"revocation_check_s": 0.001})
    pipeline.run_all(s)
    versions = len(pipeline.index_store(s).history())
    for i in range(6):  # half the source gone at once: the next scan holds it for confirmation
        (root / "notes" / f"n{i}.md").unlink()
    assert revocation_check.listed_revocations(s) == ([], {})
    assert revocation_check.during_run(s, "test") is None
    shutil.move(root, tmp_path / "unmounted")  # the share drops: nothing to list
    assert revocation_check.during_run(s, "test") is None
    assert "n0.md" in served(s, "kumquat0") and "n7.md" in served(s, "kumquat7")
    assert len(pipeline.index_store(s).history()) == versions
    shutil.move(tmp_path / "unmounted", root)
    (root / "notes" / "n7.md").unlink()  # one more gone: 7 of 12 is still a drop to hold
    revoke_public(root, "notes/n8.md")  # a revoked group is never held
    assert revocation_check.listed_revocations(s) == ([], {"docs:notes/n8.md": []})
    # The shard steps of a run in several processes list the sources once per interval between them.
    s.safety.revocation_check_s = 3600
    promotion.forget_revoked_since_scan(s)  # as a scan does: no check since it
    revocation_check._last_check[str(s.home)] = time.monotonic() - 7200  # this process: due
    assert revocation_check.during_run(s, "test") is not None and "n8.md" not in served(s, "kumquat8")
    revocation_check._last_check[str(s.home)] = time.monotonic() - 7200  # another process, due by its own clock
    revoke_public(root, "notes/n9.md")
    assert revocation_check.during_run(s, "test") is None and "n9.md" in served(s, "kumquat9")


def test_sudden_drop_is_held_until_confirmed(tmp_path):
    files = {f"notes/n{i}.md": f"# Note {i}\n\nNote number {i} mentions the word kumquat{i}.\n" for i in range(12)}
    root = make_corpus(tmp_path / "src", files)
    s = make_settings(tmp_path, root)
    pipeline.run_all(s)
    for i in range(6):
        (root / "notes" / f"n{i}.md").unlink()
    out = pipeline.run_all(s)
    assert not out["promotion"]["promoted"] and "--confirm-deletions" in out["promotion"]["reason"]
    assert sorted(promotion.held_deletions(s)) and "n0.md" in served(s, "kumquat0")
    event = promotion.promote(s, CANDIDATE, why="confirmed", confirm_deletions=True)
    assert "confirmed deletion of 6" in event.why
    assert "n0.md" not in served(s, "kumquat0") and "n7.md" in served(s, "kumquat7")


# ---- poison inputs --------------------------------------------------------------------------------------


def test_poison_records_and_orphan_sidecars(tmp_path):
    records = tmp_path / "records.jsonl"
    rows = [{"_id": "ok1", "title": "Okapi", "text": "The okapi lives in the Ituri forest."},
            {"_id": "bad\u0000id", "title": "Nul", "text": "A record whose id holds a NUL."},
            {"_id": "huge", "title": "Huge", "text": "word " * 4000}]
    records.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    folder = make_corpus(tmp_path / "src", {"a.md": "# A\n\nApples.\n"})
    write(folder, "gone.md.meta.json", json.dumps({"access_groups": ["public"]}))
    s = make_settings(tmp_path, folder, parsing={"max_file_bytes": 10_000}, sources=[
        {"name": "recs", "path": str(records), "access_groups": ["public"]},
        {"name": "docs", "path": str(folder), "access_groups": ["public"]}])
    pipeline.run_all(s)
    failures = {f["source_uri"].rsplit("#", 1)[-1]: f["reason"] for f in pipeline.mf.summarize(pipeline.mf.load_manifest(s.state))["failures"]}
    assert any("control characters" in r for r in failures.values())
    assert "exceeds max_file_bytes" in failures["huge"]
    docs = set(pipeline.mf.load_manifest(s.state)["relpath"].to_pylist())
    assert "gone.md.meta.json" not in docs
    # The poisoned record disappearing later must not freeze indexing.
    records.write_text(json.dumps(rows[0]) + "\n")
    out = pipeline.run_all(s)
    assert "okapi" in " ".join(h.text.lower() for h in Retriever(settings=s, trace=False).search("okapi forest", 3).hits)
    assert out["index"]["version"]


# ---- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize("toml, expect", [
    ('[[sources]]\nname = "d"\npath = "."\nacess_groups = ["x"]\n', "sources.0.acess_groups' (did you mean 'access_groups'?)"),
    ('[eval]\ngolden_fle = "g.jsonl"\n', "eval.golden_fle' (did you mean 'golden_file'?)"),
    ('[query]\ncandidates = "many"\n', "query.candidates"),
    ('[index\ntable = "x"\n', "malformed TOML"),
])
def test_config_errors_are_one_line_with_file_and_key(tmp_path, toml, expect):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(str(cfg))
    msg = str(err.value)
    assert expect in msg and str(cfg) in msg and "\n" not in msg


# ---- a long-lived Retriever does not leak ------------------------------------------------------------


def test_retriever_releases_old_versions(built):
    s, root = built
    r = Retriever(settings=s, trace=False, cache_size=0)
    r.search(REFUND, 3)

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    counts = []
    for i in range(8):
        write(root, "products/new.md", f"# Comet {i}\n\nThe Comet {i} torch is waterproof to {i} metres.\n")
        pipeline.run_all(s)
        r.search(REFUND, 3)
        counts.append(fds())
    assert counts[-1] - counts[2] <= 2, counts


def test_a_rollback_holds_the_runs_promotions_until_an_operator_promotes(built, tmp_path):
    """An operator rolls a bad release back; the next scheduled run (nothing changed: its candidate
    is the bad release) used to promote it again within the hour. Runs now build and check
    candidates but promote none until an operator promotes; revocations still reach production."""
    s, root = built
    store = pipeline.index_store(s)
    v1 = store.tags()[PRODUCTION]
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    assert pipeline.run_all(s)["promotion"]["promoted"]
    assert promotion.rollback(s, why="bad release").to_version == v1

    out = pipeline.run_all(s)  # a scheduled run: the sources did not change
    assert store.tags()[PRODUCTION] == v1, out.get("promotion")
    assert not out["promotion"]["promoted"] and "rolled back to v" in out["promotion"]["reason"]
    assert "bad release" in out["promotion"]["reason"]

    # A change to the sources builds a new candidate, still held; a revocation goes through.
    write(root, "products/later.md", "# Nova lamp\n\nThe Nova lamp runs for nine hours.\n")
    revoke_public(root, "policies/refund.md")
    out = pipeline.run_all(s)
    assert not out["promotion"]["promoted"] and store.history()[-1].action == "revoke"
    assert "refund.md" not in served(s, REFUND) and "later.md" not in served(s, "Nova lamp nine hours")
    assert promotion.rolled_back(store) is not None

    # The operator promotes: the hold ends and runs promote again.
    promotion.promote(s, why="fixed")
    assert promotion.rolled_back(store) is None and "later.md" in served(s, "Nova lamp nine hours")
    write(root, "products/later.md", "# Nova lamp\n\nThe Nova lamp runs for eleven hours.\n")
    assert pipeline.run_all(s)["promotion"]["promoted"]


_HOLDER = """
import sys, time
from pathlib import Path
from ingest_platform import revocation_check
from ingest_platform.config import load_settings
from ingest_platform.locking import writer_lock

s = load_settings(sys.argv[1])
holding, go, stop = (Path(p) for p in sys.argv[2:5])
with writer_lock(s.home, what="run"):
    holding.touch()
    deadline = time.monotonic() + 120
    while not stop.exists() and time.monotonic() < deadline:
        if go.exists():  # the run is parsing: its progress calls the check
            revocation_check.during_run(s, "parse")
        time.sleep(0.05)
"""


def _hold_the_home(cfg: Path, tmp_path: Path, name: str):
    """A real second process that holds the writer lock as a long run does, and runs the run's
    check once ``<name>.go`` exists; returns (process, go file, stop file)."""
    import subprocess
    import sys

    holding, go, stop = (tmp_path / f"{name}.{x}" for x in ("holding", "go", "stop"))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(cfg), str(holding), str(go), str(stop)],
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while not holding.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc, go, stop


def test_a_rollback_asked_for_during_a_long_run_is_carried_out_by_the_run(tmp_path):
    """A re-parse or re-embed holds the home for hours; a rollback used to fail with "locked" for
    all that time. It is handed to the run, which carries it out at its next check; a request the
    run never carried out lapses at the next run's scan instead of rolling back hours later."""
    from ingest_platform.config import load_settings
    from ingest_platform.errors import HomeLocked

    from .conftest import write_config

    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root, extra="[safety]\nrevocation_check_s = 0.1")
    s = load_settings(str(cfg))
    pipeline.run_all(s)
    store = pipeline.index_store(s)
    v1 = store.tags()[PRODUCTION]
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    pipeline.run_all(s)
    v2 = store.tags()[PRODUCTION]

    proc, go, stop = _hold_the_home(cfg, tmp_path, "run1")
    try:
        with pytest.raises(HomeLocked, match="handed to it"):
            promotion.rollback(s, why="wrong torch depth", who="ops", wait_s=0)
        assert promotion.rollback_request(s)["status"] == "pending" and store.tags()[PRODUCTION] == v2
        go.touch()  # the run reaches its next check
        deadline = time.monotonic() + 60
        while promotion.rollback_request(s)["status"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None  # carried out while the run still holds the home
    finally:
        stop.touch()
        proc.wait(timeout=60)
    assert promotion.rollback_request(s)["status"] == "applied"
    assert store.tags()[PRODUCTION] == v1
    event = store.history()[-1]
    assert (event.action, event.who) == ("rollback", "ops") and "while a run held the home" in event.why
    assert not pipeline.run_all(s)["promotion"]["promoted"]  # the rollback holds

    # Handed to a holder that ends without carrying it out: the next run's scan lets it lapse.
    promotion.promote(s, why="operator: forward again")
    proc, go, stop = _hold_the_home(cfg, tmp_path, "run2")
    try:
        with pytest.raises(HomeLocked):
            promotion.rollback(s, why="changed my mind later", wait_s=0)
    finally:
        stop.touch()
        proc.wait(timeout=60)
    production = store.tags()[PRODUCTION]
    pipeline.run_all(s)
    assert promotion.rollback_request(s)["status"] == "lapsed" and store.tags()[PRODUCTION] == production


def test_a_process_with_another_shard_count_never_empties_the_candidate(tmp_path):
    """The indexable folder can be emptied while the enriched one stays as it was: its writer laid
    it out afresh for another ``[scale] shards`` (``shards.py``), or someone cleared it. The next
    run must rebuild that folder, not read it as a corpus with no chunks and drop every document
    from the candidate. (A process that only reads with another count changes nothing:
    ``test_only_a_run_lays_stage_folders_out_afresh``.)"""
    root = make_corpus(tmp_path / "src")
    settings = make_settings(tmp_path, root, scale={"shards": 4})
    pipeline.run_all(settings)
    store = pipeline.index_store(settings)
    chunks = store.checkout(CANDIDATE).count_rows()
    assert chunks > 0

    other = make_settings(tmp_path, root, scale={"shards": 2})
    pipeline.indexable_table(other, write=True)  # the folder's writer, with the other count
    assert pipeline.load_enriched(settings, ["chunk_id"]).num_rows == 0

    pipeline.run_all(settings)
    assert pipeline.load_enriched(settings, ["chunk_id"]).num_rows == chunks
    assert store.checkout(CANDIDATE).count_rows() == chunks
    assert store.checkout(PRODUCTION).count_rows() == chunks


def _stage_files(settings) -> dict[str, float]:
    from ingest_platform import state

    out = {}
    for folder in (state.chunks(settings.state), state.enriched(settings.state), state.indexable(settings.state)):
        out.update({str(p.relative_to(settings.state)): p.stat().st_mtime_ns for p in folder.iterdir()})
    return out


def test_only_a_run_lays_stage_folders_out_afresh(tmp_path):
    """Reading never deletes: a process with another ``[scale] shards`` (a check, a notebook, a
    report) reads the stage folders as they were written and changes no file. A stage that would
    read an upstream folder laid out with another count fails named instead of reading the wrong
    shards; a whole run with the new count re-lays every folder out and serves every document."""
    from ingest_platform.errors import PlatformError

    root = make_corpus(tmp_path / "src")
    settings = make_settings(tmp_path, root, scale={"shards": 4})
    pipeline.run_all(settings)
    before = _stage_files(settings)
    served = pipeline.load_enriched(settings, ["chunk_id"])["chunk_id"].to_pylist()

    other = make_settings(tmp_path, root, scale={"shards": 2})
    assert sorted(pipeline.load_enriched(other, ["chunk_id"])["chunk_id"].to_pylist()) == sorted(served)
    assert pipeline.load_enriched_documents(other, ["chunk_id"]).num_rows >= len(served)
    assert pipeline.chunk_table(other).read_all(["doc_id"]).num_rows > 0
    assert pipeline.pending_shards(settings, "embed") == []
    assert _stage_files(settings) == before

    with pytest.raises(PlatformError, match="4 shards"):
        pipeline.enrich(other)  # the chunks are still in 4 shards: the chunk stage has not run with 2
    assert pipeline.load_enriched(settings, ["chunk_id"]).num_rows == len(served)

    pipeline.run_all(other)
    assert pipeline.indexable_table(other).written() and set(pipeline.indexable_table(other).written()) <= {"000", "001"}
    store = pipeline.index_store(other)
    assert store.checkout(CANDIDATE).count_rows() == len(served)
    assert store.checkout(PRODUCTION).count_rows() == len(served)
