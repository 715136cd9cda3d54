"""Progress reporting: log lines without a terminal, a bar with one, and the caller's callback fed."""

import io
import logging

from ingest_platform import progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_most_every_interval_with_rate_and_time_left(caplog):
    seen, clock = [], Clock()
    with caplog.at_level(logging.INFO, logger="ingest_platform.progress"):
        report = progress.Progress("embedding", 100, seen.append, unit="chunk", interval_s=5.0, clock=clock)
        for _ in range(100):
            clock.now += 0.5  # 2 chunks/s: 50 s in all
            report(1)
        report.close()
    lines = [r.getMessage() for r in caplog.records]
    # One line per 5 s of work (not per item, not per 10%), and one at the end.
    assert len(lines) == 10, lines
    assert lines[0] == "embedding: 10/100 chunks (10%), 2.0 chunks/s, 45s left"
    assert lines[-1] == "embedding: 100/100 chunks (100%), 2.0 chunks/s, done in 50s"
    assert sum(seen) == 100


def test_a_fast_stage_logs_once(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="ingest_platform.progress"):
        report = progress.Progress("parsing", 16, unit="doc", clock=clock)
        for _ in range(16):
            clock.now += 0.1
            report(1)
    assert [r.getMessage() for r in caplog.records] == ["parsing: 16/16 docs (100%), 10.0 docs/s, done in 2s"]


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
