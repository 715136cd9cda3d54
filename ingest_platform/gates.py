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
from ingest_platform.storage import atomic_write_text

GateError = PromotionRefused  # the name older callers know


def record(home: Path, version: int, name: str, passed: bool, details: dict | None = None) -> None:
    """Record ``name``'s verdict for ``version`` (replacing an earlier one of the same gate)."""
    payload = {"passed": bool(passed), "at": datetime.now(UTC).isoformat(), "details": details or {}}
    atomic_write_text(json.dumps(payload, indent=1, sort_keys=True, default=str), state.gate(home, version, name))


def results(home: Path, version: int) -> dict[str, dict]:
    """gate name -> its recorded verdict for ``version``."""
    folder = state.gate(home, version, "x").parent
    if not folder.exists():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
