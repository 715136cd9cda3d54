"""Take a screenshot of the Dagster asset graph from the running UI, for the README.

Usage: .venv/bin/python scripts/screenshot_ui.py [--out docs/asset-graph.png]
Needs Debian's chromium (`apt-get install chromium`) and the playwright package
(`.venv/bin/pip install playwright`; it drives that chromium, no browser download). Run
`scripts/run.sh` first so the graph shows materializations: the UI uses the same persistent
instance (<home>/dagster) as the CLI.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "asset-graph.png"))
    ap.add_argument("--path", default="/asset-groups", help="UI page to capture (default: asset lineage)")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from ingest_platform.config import load_settings

    home = Path(load_settings().home).resolve()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster")}
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    dagster = Path(sys.executable).with_name("dagster")
    server = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=3)
                break
            except OSError:
                time.sleep(1)
        else:
            print("dagster dev did not start", file=sys.stderr)
            return 1
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}{args.path}")
            page.wait_for_timeout(4000)
            skip = page.get_by_role("button", name="Skip")
            if skip.count():  # the "join the community" dialog shown on first visit
                skip.first.click()
            # Groups start collapsed: "Expand all groups" in the graph's settings menu is Alt+E.
            page.wait_for_timeout(1500)
            page.mouse.click(1200, 250)  # focus the graph canvas
            page.keyboard.press("Alt+e")
            page.get_by_role("button", name="Hide navigation").click()
            page.wait_for_timeout(6000)
            page.screenshot(path=args.out)
            browser.close()
        print(f"wrote {args.out}")
        return 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
