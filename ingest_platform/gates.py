"""Quality-gate results per index version: what promotion must see before moving ``production``.

Blocking checks record their verdict here for the exact table version they examined.
``ingest_platform.promotion`` (the one door to production) knows which gates the current settings
require and refuses a version unless each has a passing verdict here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from ingest_platform import state
from ingest_platform.errors import PromotionRefused
from ingest_platform.locking import file_lock
from ingest_platform.storage import atomic_write_text

GateError = PromotionRefused  # the name older callers know


def _path(home: Path, version: int) -> Path:
    return state.gate(home, version)


def record(home: Path, version: int, name: str, passed: bool, details: dict | None = None) -> None:
    path = _path(home, version)
    with file_lock(path.with_name(".lock")):  # checks of one run may record concurrently
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = {"passed": bool(passed), "at": datetime.now(UTC).isoformat(), "details": details or {}}
        atomic_write_text(json.dumps(data, indent=1, sort_keys=True, default=str), path)


def results(home: Path, version: int) -> dict[str, dict]:
    path = _path(home, version)
    return json.loads(path.read_text()) if path.exists() else {}


