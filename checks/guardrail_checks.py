"""The guardrails check on the enriched chunks (the numbers live in ``ingest_platform.risk_report``).

Declared ``blocking=True`` like the quality checks; whether a failure blocks is decided at run time
by ``[quality] blocking.guardrails`` (default false: a WARN that flagged chunks appeared or jumped,
nothing stops). Set it to true to keep a build with new flagged chunks out of production.
"""

from __future__ import annotations

import dagster as dg

from assets.ingest import enriched_chunks
from ingest_platform import risk_report
from resources import PlatformSettings

from .quality_checks import to_check_result


@dg.asset_check(asset=enriched_chunks, name=risk_report.GUARDRAILS, blocking=True,
                description="Warns when chunks flagged by the guardrails (injected instructions, hidden or "
                            "invisible text, encoded blobs, exfiltration links) appear or rise by more than "
                            "[guardrails] max_flagged_increase since the last build; blocks only when "
                            "[quality] blocking.guardrails = true.")
def guardrails(platform: PlatformSettings) -> dg.AssetCheckResult:
    return to_check_result(risk_report.check_guardrails(platform.get()))


GUARDRAIL_CHECKS = [guardrails]
