"""Kill a real run (SIGKILL, in a subprocess) at the moments that matter, then check that a re-run
converges to exactly the index an uninterrupted run builds, and that ``production`` never points
at a half-written or unchecked version in between."""

import json
import os
import shutil
import signal
import subprocess
import sys

import dagster as dg
import pytest

from definitions import execute_run
from ingest_platform import pipeline, promotion
from ingest_platform.config import load_settings
from ingest_platform.faults import ENV as CRASH_ENV

from .conftest import REPO, SMALL_CORPUS, make_corpus, write, write_config

pytestmark = pytest.mark.slow  # a run killed in a subprocess at each point: CI's named step

# Where state is at risk: mid-parse (cache segments), mid-embed (cache segments), between the index
# commit and its optimize, between optimize and the candidate tag, between the promotion record
# and the tag move. ``scan:before_save`` and ``chunk:before_write`` guard single atomic renames and
# pass too; run them with INGEST_PLATFORM_CRASH_POINTS=all (each point costs a process start).
POINTS = ["parse:document", "embed:before_save", "index:written", "index:optimized", "promote:recorded"]
if os.environ.get("INGEST_PLATFORM_CRASH_POINTS") == "all":
    POINTS = ["scan:before_save", *POINTS[:1], "chunk:before_write", *POINTS[1:]]


def production_rows(settings, ref="production"):
    table = pipeline.index_store(settings).checkout(ref)
    rows = table.search().select(["chunk_id", "doc_id", "text", "access_groups"]).limit(None).to_arrow().to_pylist()
    return sorted((r["chunk_id"], r["doc_id"], r["text"], tuple(r["access_groups"])) for r in rows)


def mutate(root):
    write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "21 days"))
    write(root, "support/faq.md", "# FAQ\n\n## Batteries\n\nLantern batteries last about 800 charge cycles.\n")
    (root / "hr" / "leave.md").unlink()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A promoted baseline state, the mutated corpus, and the rows a clean run over it produces."""
    base = tmp_path_factory.mktemp("crash")
    root = make_corpus(base / "src")
    cfg = write_config(base, root)
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(cfg), instance=instance).success
    mutate(root)
    reference = base / "reference"
    shutil.copytree(base / "state", reference / "state")
    ref_cfg = write_config(reference, root)
    with dg.instance_for_test() as instance:
        assert execute_run(config_file=str(ref_cfg), instance=instance).success
    return base, root, production_rows(load_settings(ref_cfg))


@pytest.mark.parametrize("point", POINTS)
def test_killed_run_converges_and_production_stays_valid(world, point, tmp_path):
    base, root, expected = world
    shutil.copytree(base / "state", tmp_path / "state")  # the promoted baseline, before the change
    cfg = write_config(tmp_path, root)
    settings = load_settings(cfg)
    before = pipeline.index_store(settings).version_of("production")

    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_PLATFORM_")}
    env.update({CRASH_ENV: point, "INGEST_PLATFORM_CONFIG": str(cfg)})
    proc = subprocess.run([sys.executable, "-m", "ingest_platform.cli", "run", "--config", str(cfg)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, f"{point} was never reached:\n{proc.stderr[-3000:]}"

    # Between the crash and the re-run, serving still answers from a complete version: the
    # baseline, the baseline with the deletion applied by the fast path (no gate needed to remove
    # rows), or a checked candidate.
    store = pipeline.index_store(settings)
    production = store.version_of("production")
    revoked_from = {e.to_version: e.from_version for e in store.history() if e.action == "revoke"}
    assert production in (before, next((v for v, f in revoked_from.items() if f == before), None)) \
        or promotion.check_gates(settings, production) is not None
    production_rows(settings)  # readable

    with dg.instance_for_test() as instance:
        result = execute_run(config_file=str(cfg), instance=instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert production_rows(settings) == expected
    assert store.version_of("production") == store.version_of("candidate")
    stack = store.production_stack()
    revoked_from = {e.to_version: e.from_version for e in store.history() if e.action == "revoke"}
    assert stack[-1] == store.version_of("production")
    assert stack[0] == before or revoked_from.get(stack[0]) == before  # the baseline release, maybe revoked
    leftovers = [p for p in settings.state.rglob(".*.tmp")]
    assert not leftovers, leftovers

    # And one more run is a no-op: nothing left half-done for later runs to trip over.
    with dg.instance_for_test() as instance:
        again = execute_run(config_file=str(cfg), instance=instance)
    assert again.success and not list(again.get_asset_materialization_events())  # nothing ran again
    assert any(e.event_type_value == "ASSET_OBSERVATION" for e in again.all_events)  # and it says so
    history = [json.loads(line) for line in store.history_path.read_text().splitlines()]
    assert history[-1]["to_version"] == store.version_of("production")
