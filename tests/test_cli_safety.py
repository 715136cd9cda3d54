"""Production safety through the command as operators run it (real subprocesses): concurrent runs
on one home, one-line errors for bad configuration and golden sets, warnings that do not block,
outages reported, explicit versions for operators only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO, make_corpus, write, write_config
from .test_cli import cli, cli_main


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


@pytest.mark.slow
def test_parallel_runs_on_one_home_never_break_it(tmp_path):
    root = make_corpus(tmp_path / "src")
    cfg = str(write_config(tmp_path, root))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("INGEST_PLATFORM_")}
    env["INGEST_PLATFORM_CONFIG"] = str(REPO / "tests" / "empty.toml")
    procs = [subprocess.Popen([sys.executable, "-m", "ingest_platform.cli", "run", "--config", cfg, "--json"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(p.wait(timeout=900), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 4, 4], [(c, e[-500:]) for c, _, e in results]
    for code, _, err in results:
        if code == 4:
            assert "locked by another writer" in _one_line(err)
    again = cli("run", "--config", cfg, "--json")  # the home still works
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["success"]


@pytest.mark.slow
def test_instance_creation_races_many_times(tmp_path):
    """Dagster's SQLite storage created by several processes at once, repeatedly: every process
    gets a working instance and the storage has one schema head afterwards."""
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[2])
        from definitions import instance_for
        instance = instance_for(sys.argv[1])
        instance.get_runs(limit=1)
        print("ok")
    """)
    for trial in range(3):
        home = tmp_path / f"home{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(home), str(REPO)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        assert all(c == 0 and "ok" in o for c, o, _ in outs), [e[-800:] for _, _, e in outs]
        check = subprocess.run([sys.executable, "-c", code, str(home), str(REPO)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr[-800:]


def test_bad_config_and_golden_set_are_one_line_exit_2(tmp_path):
    root = make_corpus(tmp_path / "src")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('home = "state"\n[eval\ngolden_file = "g.jsonl"\n')
    res = cli("run", "--config", str(bad_toml))
    assert res.returncode == 2 and "malformed TOML" in _one_line(res.stderr)

    typo = write_config(tmp_path, root, extra="[eval]\ngolden_fle = \"g.jsonl\"\n")
    res = cli("status", "--config", str(typo))
    line = _one_line(res.stderr)
    assert res.returncode == 2 and "golden_fle" in line and "golden_file" in line and str(typo) in line

    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps({"id": "q1", "query": "refund", "relevant_doc_ids": ["docs:policies/refund.md"]})
                      + "\n{not json\n")
    gcfg = tmp_path / "g" / "ingest-platform.toml"
    gcfg.parent.mkdir()
    gcfg.write_text(write_config(tmp_path / "g", root).read_text() + f'[eval]\ngolden_file = "{golden.as_posix()}"\n')
    res = cli("run", "--config", str(gcfg))
    line = _one_line(res.stderr)
    assert res.returncode == 2 and "golden.jsonl" in line and ":2" in line


def test_warnings_do_not_block_and_outages_are_reported(tmp_path, capsys):
    root = make_corpus(tmp_path / "src")
    write(root, "broken.pdf", b"%PDF-1.4 this is not really a pdf")
    cfg = str(write_config(tmp_path, root, extra="[quality]\nmax_parse_failure_rate = 0.1\n"))
    res = cli("run", "--config", cfg, "--json")
    summary = json.loads(res.stdout)
    assert res.returncode == 0, res.stderr[-2000:]
    # Both warn (a failed document, a failure rate over 10%); neither blocks.
    assert summary["warnings"] == ["documents_failed", "manifest_quality"] and summary["blocked_by"] == [] and summary["promoted"]
    assert "expect_column_values_to_not_be_in_set" in summary["checks"]["manifest_quality"]["description"]

    moved = tmp_path / "unmounted"
    shutil.move(root, moved)
    root.mkdir()  # an unmounted share: the folder is there and empty
    code, out, _ = cli_main(capsys, "run", "--config", cfg, "--json")
    summary = json.loads(out)
    assert code == 0 and "docs" in summary["unavailable_sources"] and "empty" in summary["unavailable_sources"]["docs"]
    assert summary["documents"]["by_status"]["deleted"] == 0
    status = json.loads(cli_main(capsys, "status", "--config", cfg, "--json")[1])
    assert "docs" in status["unavailable_sources"]
    q = json.loads(cli_main(capsys, "query", "annual plan refund", "--config", cfg, "--groups", "public", "--json")[1])
    assert any(h["doc_id"].endswith("refund.md") for h in q["hits"])

    code, _, err = cli_main(capsys, "query", "refund", "--config", cfg, "--version", "1")
    assert code == 2 and "operator action" in err
    code, out, _ = cli_main(capsys, "query", "refund", "--config", cfg, "--version", str(summary["production_version"]),
                            "--operator", "--json")
    assert code == 0


def _a_run_parsing_a_bulk_upload(root, cfg: str, settings) -> subprocess.Popen:
    """A real `ingest-platform run` of 300 new files (it parses and embeds for a while), returned
    once its scan has saved the manifest: the run holds the home and is past its scan."""
    import random
    import time

    words = "lantern battery cold charge beacon fjord crew winter lumen hour field shift lamp dock harbour".split()
    rng = random.Random(7)
    for i in range(300):
        write(root, f"bulk/note-{i}.md", f"# Note {i}\n\n" + " ".join(rng.choice(words) for _ in range(60)) + ".\n")
    manifest = settings.state / "manifest.parquet"
    scanned_before = manifest.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_PLATFORM_")}
    env["INGEST_PLATFORM_CONFIG"] = str(REPO / "tests" / "empty.toml")
    run = subprocess.Popen([sys.executable, "-m", "ingest_platform.cli", "run", "--config", cfg], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while manifest.stat().st_mtime_ns == scanned_before and time.monotonic() < deadline:
        time.sleep(0.05)
    return run


@pytest.mark.slow
def test_a_revocation_made_while_a_cli_run_parses_leaves_production_before_the_run_ends(tmp_path):
    """The operator's command, a real subprocess: a deletion and a revoked group made after the
    run's scan leave production while the run is still parsing and embedding a bulk upload, and the
    candidate's metadata in Dagster names them."""
    import time

    import dagster as dg

    from definitions import instance_for
    from ingest_platform.config import load_settings

    from .test_production_safety import HOURS, REFUND, revoke_public, served

    root = make_corpus(tmp_path / "src")
    cfg = str(write_config(tmp_path, root, extra="[safety]\nrevocation_check_s = 0.2"))
    assert cli("run", "--config", cfg).returncode == 0
    s = load_settings(cfg)
    assert "refund.md" in served(s, REFUND) and "hours.txt" in served(s, HOURS)
    run = _a_run_parsing_a_bulk_upload(root, cfg, s)
    try:
        revoke_public(root, "policies/refund.md")
        (root / "support" / "hours.txt").unlink()
        while "refund.md" in served(s, REFUND) and run.poll() is None:
            time.sleep(0.1)
        assert run.poll() is None, "the revocation waited for the run to end"
        assert "hours.txt" not in served(s, HOURS, ("public", "staff"))
    finally:
        out, _ = run.communicate(timeout=900)
    assert run.returncode == 0, out[-3000:]
    assert "refund.md" not in served(s, REFUND) and "hours.txt" not in served(s, HOURS, ("public", "staff"))
    instance = instance_for(s.home, s)
    event = instance.get_latest_materialization_event(dg.AssetKey("candidate_index"))
    metadata = event.asset_materialization.metadata
    assert metadata["documents_revoked_during_run"].value == 2
    assert {r.data["document"] for r in metadata["revoked_during_run"].records} == {
        "docs:policies/refund.md", "docs:support/hours.txt"}


@pytest.mark.slow
def test_a_rollback_asked_for_while_a_cli_run_parses_is_carried_out_before_the_run_ends(tmp_path):
    """Both commands real subprocesses: `rollback` during a run that parses a bulk upload returns
    once the run has rolled production back (it used to exit 4, "locked", for the whole run), and
    the run then does not promote its own candidate over the rollback."""
    from ingest_platform import pipeline
    from ingest_platform.config import load_settings

    root = make_corpus(tmp_path / "src")
    cfg = str(write_config(tmp_path, root, extra="[safety]\nrevocation_check_s = 0.2"))
    assert cli("run", "--config", cfg).returncode == 0
    write(root, "products/new.md", "# Comet X\n\nThe Comet X torch is waterproof to 50 metres.\n")
    assert cli("run", "--config", cfg).returncode == 0
    s = load_settings(cfg)
    store = pipeline.index_store(s)
    v1, v2 = store.production_stack()[-2:]
    run = _a_run_parsing_a_bulk_upload(root, cfg, s)
    try:
        rollback = cli("rollback", "--config", cfg, "--reason", "bad torch data", "--json")
        assert rollback.returncode == 0, rollback.stderr
        assert run.poll() is None, "the rollback waited for the run to end"
        event = json.loads(rollback.stdout)
        assert event["to_version"] == v1 and "while a run held the home" in event["why"]
        assert store.tags()["production"] == v1
    finally:
        out, _ = run.communicate(timeout=900)
    assert run.returncode == 3 and "NOT PROMOTED: production was rolled back" in out, out[-3000:]
    assert store.tags()["production"] == v1 != v2
