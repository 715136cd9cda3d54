"""The Dagster UI as users reach it: `dagster dev` on loopback, asked over its GraphQL API."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import REPO, make_corpus, write_config



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


@pytest.fixture()
def dagster_dev(tmp_path):
    root = make_corpus(tmp_path / "src")
    cfg = write_config(tmp_path, root)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_PLATFORM_")}
    log = open(tmp_path / "dagster.log", "w")
    # Through the CLI, as users start it: it sets a persistent DAGSTER_HOME under the state folder.
    proc = subprocess.Popen([sys.executable, "-m", "ingest_platform.cli", "ui", "--config", str(cfg),
                             "--port", str(port)],
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
        yield port, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # dagster dev stops the webserver and daemon it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode is not None
    assert (tmp_path / "state" / "dagster" / "dagster.yaml").exists()  # the instance persisted


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
    port, tmp = dagster_dev
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
    assert all(n["groupName"] in {"ingest", "index"} and n["description"] for n in nodes.values())
    checks = {c["name"]: c["blocking"] for n in nodes.values()
              for c in n["assetChecksOrError"].get("checks", [])}
    assert checks["index_quality"] and checks["eval_gate"]

    params = {"selector": {"repositoryLocationName": entry["name"], "repositoryName": repo["name"],
                           "jobName": "index_job"}, "runConfigData": {}}
    launched = gql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.time() + 420, None
    while time.time() < deadline:
        status = gql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                     {"id": run_id})["runOrError"]["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(2)
    assert status == "SUCCESS", (tmp / "dagster.log").read_text()[-3000:]
    # The sensor (on by default) may have started a run of its own for the same new files; then the
    # later materialization says "already production". One of them promoted.
    prod = gql(port, '{ assetOrError(assetKey: {path: ["production_index"]}) { ... on Asset { assetMaterializations(limit: 5) { runId metadataEntries { label ... on BoolMetadataEntry { boolValue } } } } } }')
    mats = prod["assetOrError"]["assetMaterializations"]
    promoted = [m["runId"] for m in mats
                if {e["label"]: e.get("boolValue") for e in m["metadataEntries"]}.get("promoted")]
    assert len(promoted) == 1
