"""Progress of long stages (parsing, embedding): a terminal bar when the CLI runs on a terminal,
otherwise a log line with the rate and the time left, at most every ``interval_s`` seconds (and
once at the end), so a Dagster run's event log shows how fast a stage goes without a line per item.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger("ingest_platform.progress")
_bars = False

# A line at most this often: a 10-minute embed gives ~120 lines, a 3-second parse gives one.
INTERVAL_S = 5.0


def enable_bars(on: bool = True) -> None:
    """The CLI turns bars on when stderr is a terminal; library and Dagster use keep log lines."""
    global _bars
    _bars = on


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    def __init__(self, label: str, total: int, extra=None, unit: str = "item", *,
                 interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.done, self.unit = label, total, 0, unit
        self._extra = extra  # another callback to feed, e.g. a Dagster context logger
        self._clock, self._interval = clock, interval_s
        self._start = self._last = clock()
        self._bar = None
        if _bars and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=unit,
                             file=sys.stderr, leave=False, dynamic_ncols=True)

    def line(self) -> str:
        """``parsing: 40/120 docs (33%), 2.5 docs/s, 32s left`` (the last line: ``in 48s``)."""
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        pct = 100 * self.done / self.total if self.total else 100
        text = f"{self.label}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%), {rate:.1f} {self.unit}s/s"
        if self.done >= self.total:
            return f"{text}, done in {_duration(elapsed)}"
        left = (self.total - self.done) / rate if rate > 0 else None
        return f"{text}, {_duration(left)} left" if left is not None else text

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        else:
            now = self._clock()
            if self.done >= self.total or now - self._last >= self._interval:
                self._last = now
                log.info(self.line())
        if self._extra:
            self._extra(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
