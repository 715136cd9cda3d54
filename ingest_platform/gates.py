"""Quality-gate results per index version: what promotion must see before moving ``production``.

Blocking checks record their verdict here for the exact table version they examined. Promotion
refuses a version with no recorded gate or with any failing one, whoever asks (the pipeline's
promotion asset or ``ingest-platform promote``), so an unchecked or failed index cannot reach
serving by going around the orchestrator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from ingest_platform.storage import atomic_write_text


class GateError(RuntimeError):
    """Promotion refused: the message names the failing or missing gates."""


def _path(home: Path, version: int) -> Path:
    return Path(home) / "gates" / f"v{version}.json"


def record(home: Path, version: int, name: str, passed: bool, details: dict | None = None) -> None:
    path = _path(home, version)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {"passed": bool(passed), "at": datetime.now(UTC).isoformat(), "details": details or {}}
    atomic_write_text(json.dumps(data, indent=1, sort_keys=True, default=str), path)


def results(home: Path, version: int) -> dict[str, dict]:
    path = _path(home, version)
    return json.loads(path.read_text()) if path.exists() else {}


def require_passed(home: Path, version: int) -> dict[str, dict]:
    got = results(home, version)
    if not got:
        raise GateError(f"index version {version} has no recorded quality gates: run the pipeline's checks first")
    failed = sorted(name for name, r in got.items() if not r["passed"])
    if failed:
        raise GateError(f"index version {version} failed blocking checks: {', '.join(failed)}")
    return got
