"""Named crash points, so tests can kill a real run at exactly the moments that matter.

``INGEST_PLATFORM_CRASH_AT=name`` (or ``name:N`` for the N-th time it is reached) makes the
process SIGKILL itself there: no cleanup handlers, no flushed buffers, like a power cut or an OOM
kill. Unset (always, outside the crash-safety tests) a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "INGEST_PLATFORM_CRASH_AT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.rpartition(":")
    if not nth.isdigit():
        target, nth = spec, "1"
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
