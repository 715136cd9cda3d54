"""The Dagster UI in a real browser (Debian's chromium, headless, driven by Playwright), as a daily
user meets it: the sample corpus indexed, one file edited and a broken one added, ``index_job``
launched from the job page's button, and the asset pages must say what happened: the changed
document by name, the failed document with its reason, the eval scores.

Runs in `.ci/run`'s named UI step (`-m ui`); skipped only when no chromium or playwright is
installed (``scripts/setup.sh`` installs both).
"""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from .conftest import REPO

spec = importlib.util.spec_from_file_location("screenshot_ui", REPO / "scripts" / "screenshot_ui.py")
ui = sys.modules.setdefault("screenshot_ui", importlib.util.module_from_spec(spec))
spec.loader.exec_module(ui)

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(ui.chromium_path() is None,
                       reason="no chromium on PATH: `apt-get install chromium` (scripts/setup.sh does)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright not installed: `pip install -e .[dev]` (scripts/setup.sh does)"),
]


def page_text(page, port: int, path: str, expect: str) -> str:
    """The page's text once ``expect`` shows (the UI fetches its data after the first paint)."""
    page.goto(f"http://127.0.0.1:{port}{path}")
    ui.settle(page)
    page.get_by_text(expect).first.wait_for(timeout=120_000)
    return page.inner_text("body")


def test_ui_names_changes_failures_and_scores_of_a_run_launched_from_it(tmp_path):
    from playwright.sync_api import sync_playwright

    scenario = ui.prepare(tmp_path)
    port = ui.free_port()
    proc = ui.start_ui(scenario.config, port, tmp_path / "dagster.log")
    try:
        with sync_playwright() as pw:
            browser = ui.open_browser(pw)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})

            # The CLI's run is a run of index_job: the job's page lists it.
            page.goto(f"http://127.0.0.1:{port}/locations/definitions.py/jobs/index_job/runs")
            ui.settle(page)
            assert "No runs found" not in page.inner_text("body")

            run = ui.launch_index_job_from_ui(page, port)
            assert run["jobName"] == "index_job" and run["status"] == "SUCCESS", run
            tags = {t["key"]: t["value"] for t in run["tags"]}
            changed, broken = f"sample:{ui.CHANGED}", f"sample:{ui.BROKEN}"
            assert f"changed: {changed}" in tags["ingest_platform/changes"]

            # The manifest names the changed document (with how it changed) and the new one.
            text = page_text(page, port, "/assets/document_manifest", changed)
            row = next(line for line in text.splitlines() if changed in line)
            assert "changed" in row and re.search(r"\b[0-9a-f]{12}\b", row), row

            # The failed document, with its reason, on the parse step; the warning check says so.
            text = page_text(page, port, "/assets/parsed_documents", broken)
            row = next(line for line in text.splitlines() if broken in line)
            assert re.search(r"pdf|corrupt|no text|parse", row, re.I), row
            text = page_text(page, port, "/assets/parsed_documents?view=checks", "documents_failed")
            assert "documents_failed" in text
            check = next(c for c in ui.check_results(port, "parsed_documents") if c["name"] == "documents_failed")
            assert check["status"] == "FAILED" and check["severity"] == "WARN", check  # yellow, not red

            # The index names the changed document with its chunk counts.
            text = page_text(page, port, "/assets/candidate_index", changed)
            row = next(line for line in text.splitlines() if changed in line)
            assert re.search(r"changed\s+\d+\s+\d+\s+\d+", row), row  # chunks added, removed, kept

            # The eval scores, as numbers, and the history trend inline.
            text = page_text(page, port, "/assets/index_eval", "recall@10")
            score = re.search(r"recall@10\s+\S*\s*.*?\b(0\.\d+|1(\.0+)?)\b", text, re.S)
            assert score, text[:3000]
            assert "→" in text  # the inline history trend: first → latest version
            browser.close()
    finally:
        ui.stop_ui(proc)
