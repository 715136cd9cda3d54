"""Dagster on PostgreSQL, and ``index_job`` on a real distributed executor: Celery workers (real
processes this test starts) fed through the RabbitMQ broker the machines run on 127.0.0.1, with
Dagster's run and event storage in a fresh PostgreSQL database. The index they build is exactly
the one an in-process run builds, and the shard steps ran in the workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import dagster as dg
import pytest

from ingest_platform import state
from ingest_platform.config import load_settings
from ingest_platform.pipeline import index_store

from .conftest import REPO, make_corpus, write_config

pytestmark = pytest.mark.distributed  # a named step of .ci/run, not the default suite

CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


needs_postgres = pytest.mark.skipif(not _reachable(5432), reason="PostgreSQL is not reachable on 127.0.0.1:5432")
needs_rabbitmq = pytest.mark.skipif(not _reachable(5672), reason="RabbitMQ is not reachable on 127.0.0.1:5672")


@pytest.fixture()
def pg_url():
    """A PostgreSQL database of this test's own (created, then dropped)."""
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"ingest_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def rows(settings) -> list[tuple]:
    table = index_store(settings).checkout("production")
    data = table.search().select(["chunk_id", "doc_id", "text", "access_groups"]).limit(None).to_arrow().to_pylist()
    return sorted((r["chunk_id"], r["doc_id"], r["text"], tuple(r["access_groups"])) for r in data)


def cli_run(cfg, env) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ingest_platform.cli", "run", "--config", str(cfg), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_PLATFORM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


@needs_postgres
def test_dagster_storage_on_postgres_by_configuration(tmp_path, pg_url):
    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root, extra=f'[dagster]\nstorage = "{pg_url}"\n')
    summary = cli_run(cfg, clean_env())
    assert summary["promoted"]
    dagster_home = state.dagster_home(tmp_path / "state")
    assert "postgres" in (dagster_home / "dagster.yaml").read_text()
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    runs = instance.get_runs()
    assert [r.job_name for r in runs] == ["index_job"] and runs[0].is_success
    assert not list(dagster_home.glob("history/*.db"))  # nothing went to SQLite


@needs_postgres
@needs_rabbitmq
def test_index_job_on_celery_workers_builds_the_in_process_index(tmp_path, pg_url):
    root = make_corpus(tmp_path / "src")
    for name in ("reference", "celery"):
        (tmp_path / name).mkdir()
    reference = write_config(tmp_path / "reference", root)
    cli_run(reference, clean_env())

    queue = f"ingest-{uuid.uuid4().hex[:8]}"  # this test's own queue: no other worker takes its steps
    cfg = write_config(tmp_path / "celery", root, extra=(
        f'[dagster]\nexecutor = "celery"\nstorage = "{pg_url}"\n'
        f'celery_broker = "pyamqp://guest@127.0.0.1:5672//"\ncelery_queue = "{queue}"\n'))
    settings = load_settings(cfg)
    env = clean_env(INGEST_PLATFORM_CONFIG=str(cfg), DAGSTER_CELERY_BROKER_HOST="127.0.0.1",
                    DAGSTER_HOME=str(state.dagster_home(settings.state)))
    workers = [subprocess.Popen([CELERY, "-A", "dagster_celery.app", "worker", "-l", "warning", "-Q", queue,
                                 "--concurrency", "1", "-n", f"{queue}-{i}@%h"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
               for i in range(2)]
    try:
        time.sleep(5)  # the workers connect to the broker
        summary = cli_run(cfg, clean_env())
        assert summary["promoted"]
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)

    assert rows(settings) == rows(load_settings(reference))
    instance = dg.DagsterInstance.from_config(str(state.dagster_home(settings.state)))
    (run,) = instance.get_runs()
    logs = instance.all_logs(run.run_id)
    events = [e.dagster_event for e in logs if e.dagster_event is not None]
    orchestrator = {e.pid for e in events if e.event_type_value == "RUN_START"}
    shard_steps = {e.pid for e in events if e.step_key and "parse_shard[" in e.step_key and e.is_step_start}
    assert shard_steps and not shard_steps & orchestrator  # the shards were parsed by the workers
