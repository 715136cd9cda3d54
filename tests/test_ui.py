"""The Dagster UI as users reach it: `dagster dev` on loopback, asked over its GraphQL API."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, make_corpus, write_config

pytestmark = pytest.mark.ui  # a named step of .ci/run, not the default suite



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        data = json.loads(resp.read())
    assert "errors" not in data, data["errors"]
    return data["data"]


def session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> command line."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                out[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return out


def run_processes(sid: int) -> dict[int, str]:
    """The processes of runs: the code server starts each run worker with multiprocessing's spawn,
    and a run worker starts its parser workers the same way. (The code server's own resource
    tracker lives as long as the code server: not a run's.)"""
    return {pid: cmd for pid, cmd in session_processes(sid).items() if "spawn_main" in cmd or "execute_run" in cmd}


@pytest.fixture()
def dagster_dev(tmp_path):
    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root)  # its home is tmp_path/state ...
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_PLATFORM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    log = open(tmp_path / "dagster.log", "w")
    # Through the CLI, as users start it: it sets a persistent DAGSTER_HOME under the state folder.
    # ... and --home names another: everything (UI history, sensor, launched runs) must use that one.
    proc = subprocess.Popen([sys.executable, "-m", "ingest_platform.cli", "ui", "--config", str(cfg),
                             "--home", str(tmp_path / "ui-home"), "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("dagster dev did not start:\n" + (tmp_path / "dagster.log").read_text()[-3000:])
            time.sleep(1)
    try:
        yield port, tmp_path, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)  # only the CLI: it must stop dagster dev and all it started
        left = {}
        try:
            proc.wait(timeout=120)
            deadline = time.time() + 45
            while session_processes(proc.pid) and time.time() < deadline:
                time.sleep(0.5)
            left = session_processes(proc.pid)
        finally:
            for pid in session_processes(proc.pid):  # never leave a UI behind, even on failure
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            log.close()
        assert not left, f"processes left after stopping the UI: {left}"
    assert (tmp_path / "ui-home" / "dagster" / "dagster.yaml").exists()  # the instance persisted
    assert not (tmp_path / "state").exists()  # the config file's home was never used


WORKSPACE = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
    ... on RepositoryLocation { repositories { name
        jobs { name } schedules { name scheduleState { status } } sensors { name sensorState { status } }
    } }
    ... on PythonError { message }
} } } } }
"""

ASSETS = """
{ assetNodes { assetKey { path } groupName description
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } } }
"""


def test_ui_serves_graph_checks_automation_and_runs_the_job(dagster_dev):
    port, tmp, sid = dagster_dev
    (entry,) = gql(port, WORKSPACE)["workspaceOrError"]["locationEntries"]
    location = entry["locationOrLoadError"]
    assert "repositories" in location, location
    (repo,) = location["repositories"]
    assert {"index_job", "freshness_job"} <= {j["name"] for j in repo["jobs"]}
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert schedules["hourly_reindex"] == "STOPPED" and "freshness_schedule" in schedules or schedules
    assert sensors == {"source_change_sensor": "RUNNING"}

    nodes = {"/".join(n["assetKey"]["path"]): n for n in gql(port, ASSETS)["assetNodes"]}
    assert {"document_manifest", "parsed_documents", "chunks", "enriched_chunks", "embeddings",
            "candidate_index", "index_eval", "production_index"} <= set(nodes)
    assert all(n["groupName"] in {"ingest", "index", "serving", "maintenance"} and n["description"] for n in nodes.values())
    checks = {c["name"]: c["blocking"] for n in nodes.values()
              for c in n["assetChecksOrError"].get("checks", [])}
    assert checks["index_quality"] and checks["eval_gate"]

    params = {"selector": {"repositoryLocationName": entry["name"], "repositoryName": repo["name"],
                           "jobName": "index_job"}, "runConfigData": {}}
    launched = gql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.time() + 600, None
    while time.time() < deadline:
        status = gql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                     {"id": run_id})["runOrError"]["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(2)
    assert status == "SUCCESS", (tmp / "dagster.log").read_text()[-3000:]
    assert (tmp / "ui-home" / "manifest.parquet").exists()  # the launched run used the UI's home
    # No process of any run (the one launched here, or one the sensor started) outlives it: the run
    # worker exits and its parser workers are stopped when the parse step ends.
    # A run worker exits within seconds of its last event; one that keeps its parser pool lives on
    # (seen: 7 minutes after RUN_SUCCESS, until dagster dev stopped, and then orphaned).
    deadline = time.time() + 120
    while time.time() < deadline:
        active = gql(port, '{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) '
                           '{ ... on Runs { results { runId } } } }')["runsOrError"]["results"]
        if not active and not run_processes(sid):
            break
        time.sleep(1)
    assert not run_processes(sid), run_processes(sid)
    # The sensor (on by default) may have started a run of its own for the same new files; then the
    # later materialization says "already production". One of them promoted.
    prod = gql(port, '{ assetOrError(assetKey: {path: ["production_index"]}) { ... on Asset { assetMaterializations(limit: 5) { runId metadataEntries { label ... on BoolMetadataEntry { boolValue } } } } } }')
    mats = prod["assetOrError"]["assetMaterializations"]
    promoted = [m["runId"] for m in mats
                if {e["label"]: e.get("boolValue") for e in m["metadataEntries"]}.get("promoted")]
    assert len(promoted) == 1
