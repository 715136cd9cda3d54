"""Progress reporting: log lines without a terminal, a bar with one, and the caller's callback fed."""

import io
import logging

from ingest_platform import progress


def test_logs_about_every_tenth_and_feeds_the_callback(caplog):
    seen = []
    with caplog.at_level(logging.INFO, logger="ingest_platform.progress"):
        report = progress.Progress("embedding", 100, seen.append)
        for _ in range(100):
            report(1)
        report.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "embedding: 10/100" and lines[-1] == "embedding: 100/100" and len(lines) == 10
    assert sum(seen) == 100


def test_bar_when_enabled(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", err)
    progress.enable_bars(True)
    try:
        report = progress.Progress("parsing", 4)
        for _ in range(4):
            report(1)
        report.close()
    finally:
        progress.enable_bars(False)
    assert "parsing" in err.getvalue() and "/4" in err.getvalue()  # a tqdm bar was drawn
