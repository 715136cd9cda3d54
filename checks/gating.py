"""Turning a verdict into both a Dagster check result and a recorded gate for promotion."""


from collections.abc import Mapping

import dagster as dg

from ingest_platform import gates


def gate_result(home, version: int, name: str, passed: bool, metadata: Mapping | None = None,
                description: str | None = None) -> dg.AssetCheckResult:
    """Record ``passed`` for index ``version`` (promotion reads it) and return the check result."""
    plain = {k: v for k, v in (metadata or {}).items() if isinstance(v, (int, float, str, bool))}
    gates.record(home, version, name, passed, plain)
    return dg.AssetCheckResult(
        passed=passed, metadata={"index_version": version, **(metadata or {})}, description=description,
    )
