"""The README's Dagster UI screenshots, taken from the running UI after a day a user would have.

Usage: .venv/bin/python scripts/screenshot_ui.py [--out docs/] [--workdir DIR]

The scenario (also what ``tests/test_browser.py`` asserts on): the shipped sample corpus is copied
to a work folder and indexed with the CLI's run path; then one file is edited and a broken PDF is
added; the UI (``ingest-platform ui``) starts on that state, ``index_job`` is launched from the
job page's button, and the key pages are captured: the asset graph, the manifest's changes table,
the failed document with its reason, the eval scores and history, and the run.

Needs Debian's chromium (``apt-get install chromium``) and the playwright package (a dev
dependency); playwright drives that chromium and downloads nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANGED = "policies/refund-policy.md"
BROKEN = "support/broken-scan.pdf"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Scenario:
    workdir: Path
    config: Path
    home: Path
    source: str  # the source's name: documents are "<source>:<relpath>"


def prepare(workdir: Path) -> Scenario:
    """Copy the sample corpus, index it through index_job (the CLI's path), then edit one file
    and add a broken one: the state a user opens the UI on."""
    sys.path.insert(0, str(ROOT))
    from definitions import execute_run, instance_for

    src = workdir / "src"
    shutil.copytree(ROOT / "data" / "sample", src)
    config = workdir / "ingest-platform.toml"
    config.write_text(
        f'home = "{(workdir / "state").as_posix()}"\ndefault_access_groups = []\n'
        f'[[sources]]\nname = "sample"\npath = "{src.as_posix()}"\naccess_groups = ["public"]\n'
        '[[sources.access_rules]]\npattern = "hr/**"\ngroups = ["hr"]\n'
        '[[sources.access_rules]]\npattern = "finance/**"\ngroups = ["finance"]\n'
        f'[eval]\ngolden_file = "{(ROOT / "data" / "golden.jsonl").as_posix()}"\n'
        'min_recall_at_k = 0.9\nmin_mrr_at_10 = 0.75\n'
        # The test launches index_job itself; the sensor would start the same run on its own.
        '[automation]\nsensor_enabled = false\n'
    )
    home = workdir / "state"
    result = execute_run(config_file=str(config), instance=instance_for(home))
    if not result.success:
        raise RuntimeError(f"the first run failed: run {result.run_id}")
    with open(src / CHANGED, "a") as fh:
        fh.write("\n## Changes in 2027\n\nFrom 2027, refunds for annual plans are paid within 5 working days.\n")
    (src / BROKEN).write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% truncated by the scanner\n")
    return Scenario(workdir, config, home, "sample")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.loads(resp.read())
    if "errors" in data:
        raise RuntimeError(data["errors"])
    return data["data"]


CHECKS = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name blocking
        executionForLatestMaterialization { status evaluation { severity description } } } } } } } }
"""


def check_results(port: int, asset: str) -> list[dict]:
    """The asset's checks as the UI shows them: name, blocking, the latest execution's status
    (SUCCEEDED / FAILED ...) and severity (WARN is yellow, ERROR red)."""
    node = gql(port, CHECKS, {"key": {"path": [asset]}})["assetNodeOrError"]
    out = []
    for c in node["assetChecksOrError"].get("checks", []):
        ex = c["executionForLatestMaterialization"] or {}
        ev = ex.get("evaluation") or {}
        out.append({"name": c["name"], "blocking": c["blocking"], "status": ex.get("status"),
                    "severity": ev.get("severity"), "description": ev.get("description")})
    return out


def start_ui(config: Path, port: int, log: Path) -> subprocess.Popen:
    """``ingest-platform ui`` as a user starts it, in its own session; waits until it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_PLATFORM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, "-m", "ingest_platform.cli", "ui", "--config", str(config),
                             "--port", str(port)], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while True:
        try:
            entries = gql(port, "{ workspaceOrError { ... on Workspace { locationEntries { "
                                "locationOrLoadError { __typename } } } } }")["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                return proc
        except (OSError, RuntimeError):
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_ui(proc)
            raise RuntimeError("the UI did not start:\n" + log.read_text()[-3000:])
        time.sleep(1)


def stop_ui(proc: subprocess.Popen) -> None:
    """SIGTERM the CLI (it stops dagster dev and everything it started); whatever of its session is
    still alive after that (a CLI that could not finish in time leaves dagster dev orphaned) is
    killed, so no UI outlives the test or the script."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    kill_session(proc.pid)


def kill_session(sid: int) -> None:
    """SIGKILL every live process of session ``sid`` (``start_new_session=True`` makes the child's
    pid its session id; dagster dev and its children stay in that session)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            continue


def open_browser(pw):
    return pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def settle(page, ms: int = 3000) -> None:
    """Wait for the page's data, and close the first-visit "join the community" dialog (it can
    appear a few seconds after the page)."""
    page.wait_for_load_state("networkidle", timeout=120_000)
    page.wait_for_timeout(ms)
    dismiss(page)


def dismiss(page) -> None:
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.first.wait_for(state="visible", timeout=5000)
        skip.first.click()
        page.wait_for_timeout(500)
    except Exception:  # noqa: BLE001 - no dialog this time (playwright's TimeoutError)
        pass


RUNS = "{ runsOrError(limit: 20) { ... on Runs { results { runId jobName status tags { key value } } } } }"


def launch_index_job_from_ui(page, port: int, timeout_s: float = 900) -> dict:
    """Click "Materialize all" on index_job's page and wait for the run it starts to finish."""
    before = {r["runId"] for r in gql(port, RUNS)["runsOrError"]["results"]}
    page.goto(f"http://127.0.0.1:{port}/locations/definitions.py/jobs/index_job")
    settle(page)
    dismiss(page)
    page.get_by_role("button", name="Materialize all").first.click(timeout=60_000)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        new = [r for r in gql(port, RUNS)["runsOrError"]["results"]  # (the freshness schedule runs too)
               if r["runId"] not in before and r["jobName"] == "index_job"]
        if new and new[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return new[0]
        time.sleep(3)
    raise TimeoutError("the run launched from the UI did not finish")


PAGES = {  # file name -> (path, the metadata row scrolled to the top, what it shows)
    "ui-asset-graph.png": ("/asset-groups", None, "the asset graph after the run"),
    "ui-changes.png": ("/assets/document_manifest", "changes", "the manifest's changes table"),
    "ui-failed-document.png": ("/assets/parsed_documents", "failures", "a failed document with its reason"),
    "ui-eval.png": ("/assets/index_eval", "history_trend", "eval scores, inline history trend and plot"),
}


def scroll_to_row(page, key: str) -> None:
    """Bring the metadata row ``key`` to the top of the view (what the picture is about)."""
    cell = page.get_by_text(key, exact=True).first
    try:
        cell.scroll_into_view_if_needed(timeout=10_000)
        cell.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1000)
    except Exception:  # noqa: BLE001 - no such row this time: keep the top of the page
        pass


def screenshots(page, port: int, out: Path, run_id: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    pages = dict(PAGES)
    if run_id:
        pages["ui-run.png"] = (f"/runs/{run_id}", None, "the run launched from the UI, with its log")
    written = []
    for name, (path, row, _what) in pages.items():
        page.goto(f"http://127.0.0.1:{port}{path}")
        settle(page, 5000)
        if path == "/asset-groups":
            page.mouse.click(900, 400)
            page.keyboard.press("Alt+e")  # expand all groups
            page.wait_for_timeout(3000)
        if row:
            scroll_to_row(page, row)
        page.screenshot(path=str(out / name), timeout=180_000)
        written.append(out / name)
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNGs (default: docs/)")
    ap.add_argument("--workdir", help="work folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()
    if not chromium_path():
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        scenario = prepare(Path(args.workdir or tmp))
        port = free_port()
        proc = start_ui(scenario.config, port, scenario.workdir / "dagster.log")
        try:
            with sync_playwright() as pw:
                browser = open_browser(pw)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                run = launch_index_job_from_ui(page, port)
                for path in screenshots(page, port, Path(args.out), run["runId"]):
                    print(f"wrote {path}")
                browser.close()
        finally:
            stop_ui(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
