"""All state and the index on S3-compatible object storage: a real S3 server (moto's server mode,
started by this test on 127.0.0.1), configured only through the standard AWS environment
variables. The full pipeline, promotion, incremental runs and queries run against it; DuckDB reads
the traces and the eval history where they lie; and a serving replica that shares nothing with the
writer but the store follows its promotions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from ingest_platform import evaluation, pipeline, traces
from ingest_platform.config import load_settings
from ingest_platform.query import Retriever

from .conftest import REPO, SMALL_CORPUS, make_corpus, write

pytestmark = pytest.mark.object_storage  # a named step of .ci/run, not the default suite

pytest.importorskip("moto", reason="moto[server] is a dev dependency (scripts/setup.sh installs it)")
pytest.importorskip("s3fs", reason="s3fs is in the scale extra (scripts/setup.sh installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and the AWS variables that point at it."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.3)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    yield env
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture()
def bucket(s3, monkeypatch):
    import boto3
    import s3fs

    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    # fsspec reuses an S3 filesystem made with the same arguments, and it keeps the credentials
    # and endpoint of the environment it was made in: one an earlier test made (listing
    # s3://no-such-bucket with no AWS variables set) must not answer for this server, nor this
    # server's for later tests.
    s3fs.S3FileSystem.clear_instance_cache()
    name = f"ingest-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    yield name
    s3fs.S3FileSystem.clear_instance_cache()


def settings_for(home: str, root, **extra):
    return load_settings(None, home=home, sources=[{"name": "docs", "path": str(root), "access_groups": ["public"],
                                                   "access_rules": [{"pattern": "hr/**", "groups": ["hr"]}]}],
                         **extra)


def keys(bucket: str, prefix: str) -> set[str]:
    import boto3

    out, token = set(), None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        page = boto3.client("s3").list_objects_v2(**kw)
        out.update(o["Key"] for o in page.get("Contents", []))
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


def test_pipeline_promotion_and_queries_with_all_state_on_s3(bucket, tmp_path):
    root = make_corpus(tmp_path / "src")
    golden = write(tmp_path, "golden.jsonl", json.dumps(
        {"id": "q1", "query": "refund window for annual plans", "relevant_doc_ids": ["docs:policies/refund.md"]}) + "\n")
    s = settings_for(f"s3://{bucket}/ingest", root, eval={"golden_file": str(golden)})
    first = pipeline.run_all(s)
    assert first["promotion"]["promoted"], first["promotion"]
    stored = keys(bucket, "ingest/")
    for expected in ("ingest/manifest.parquet", "ingest/promotions.jsonl", "ingest/corpus-report.json"):
        assert expected in stored
    assert any(k.startswith("ingest/lancedb/chunks.lance/") for k in stored)
    assert any(k.startswith("ingest/chunks/") for k in stored) and any(k.startswith("ingest/embeddings/") for k in stored)
    assert any(k.startswith("ingest/gates/") for k in stored) and any(k.startswith("ingest/evals/history/") for k in stored)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.jsonl", "src"]  # nothing local

    r = Retriever(settings=s)
    hit = r.search("how long is the refund window for annual plans", 1).hits[0]
    assert hit.doc_id == "docs:policies/refund.md" and "30 days" in hit.text
    assert not r.search("parental leave weeks", 3).hits or all(h.doc_id != "docs:hr/leave.md"
                                                                for h in r.search("parental leave weeks", 3).hits)

    # An incremental run: one document changed, one deleted; no-op runs write nothing.
    write(root, "policies/refund.md", SMALL_CORPUS["policies/refund.md"].replace("30 days", "45 days"))
    (root / "support" / "hours.txt").unlink()
    second = pipeline.run_all(s)
    assert second["parse"]["parsed"] == 1 and second["promotion"]["promoted"]
    assert second["revoke"]["deleted"] == ["docs:support/hours.txt"]
    r.refresh()
    assert "45 days" in r.search("refund window annual plans", 1).hits[0].text
    assert not any(h.doc_id.endswith("hours.txt") for h in r.search("phone support hours", 5, mode="keyword").hits)
    noop = pipeline.run_all(s)
    assert noop["embed"]["embedded"] == 0 and not noop["index"]["wrote"]

    # DuckDB reads the traces and the eval history where they lie.
    import duckdb
    import s3fs

    traces.flush(s.home)
    con = duckdb.connect()
    con.register_filesystem(s3fs.S3FileSystem())
    n = con.execute(f"SELECT count(*) FROM read_json_auto('s3://{bucket}/ingest/traces/*.jsonl')").fetchone()[0]
    assert n >= 4
    assert [row["version"] for row in evaluation.history(s) if row["ref"] == "candidate"]


def test_a_replica_sharing_only_the_store_follows_promotions(bucket, tmp_path):
    root = make_corpus(tmp_path / "src")
    write(root, "status.md", "# Status\n\nThe depot status is ALPHA today.\n")
    writer = settings_for(f"s3://{bucket}/writer", root)
    pipeline.run_all(writer)
    # The replica: another home (its own traces), the writer's index, the tag read every 0.2 s.
    replica = load_settings(None, home=f"s3://{bucket}/replica", index={"uri": writer.lancedb_uri},
                            query={"refresh_interval_s": 0.2})
    r = Retriever(settings=replica)
    first = r.search("depot status", 1, mode="keyword")
    assert "ALPHA" in first.hits[0].text
    write(root, "status.md", "# Status\n\nThe depot status is BRAVO today.\n")
    out = pipeline.run_all(writer)
    assert out["promotion"]["promoted"]
    deadline = time.time() + 10
    while time.time() < deadline:
        res = r.search("depot status", 1, mode="keyword")
        if res.index_version != first.index_version:
            break
        time.sleep(0.1)
    assert res.index_version == out["promotion"]["to_version"] and "BRAVO" in res.hits[0].text
    assert not keys(bucket, "replica/promotions")  # it learned from the index, not a history file


def test_the_writer_lock_holds_across_processes_on_object_storage(bucket, tmp_path):
    home = f"s3://{bucket}/locked"
    code = ("import sys, time; from ingest_platform.locking import writer_lock\n"
            "with writer_lock(sys.argv[1], what='holder'):\n    print('held', flush=True); time.sleep(4)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, home], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env=dict(os.environ))
    try:
        assert holder.stdout.readline().strip() == "held"
        from ingest_platform.errors import HomeLocked
        from ingest_platform.locking import writer_lock

        with pytest.raises(HomeLocked, match="holder"):
            with writer_lock(home, what="second"):
                pass
        with writer_lock(home, what="waiter", wait_s=30):  # released when the holder is done
            pass
    finally:
        holder.wait(timeout=30)
