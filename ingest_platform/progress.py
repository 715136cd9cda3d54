"""Progress of long stages (parsing, embedding): a terminal bar when the CLI runs on a terminal,
a log line every ~10% otherwise, so a Dagster run's logs show the same progress."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("ingest_platform.progress")
_bars = False


def enable_bars(on: bool = True) -> None:
    """The CLI turns bars on when stderr is a terminal; library and Dagster use keep log lines."""
    global _bars
    _bars = on


class Progress:
    def __init__(self, label: str, total: int, extra=None, unit: str = "item"):
        self.label, self.total, self.done, self._next = label, total, 0, max(1, total // 10)
        self._extra = extra  # another callback to feed, e.g. a Dagster context logger
        self._bar = None
        if _bars and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=unit,
                             file=sys.stderr, leave=False, dynamic_ncols=True)

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.done >= self._next or self.done == self.total:
            log.info("%s: %d/%d", self.label, self.done, self.total)
            self._next = self.done + max(1, self.total // 10)
        if self._extra:
            self._extra(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
