"""Great-expectations suites as Dagster asset checks (the suites live in ``ingest_platform.quality``).

Every check is declared ``blocking=True``; whether a failure actually blocks is decided at run time
from ``[quality] blocking`` in the settings: a blocking failure has ERROR severity (downstream assets
of the run do not execute), a non-blocking one WARN severity (reported, nothing stops). The checks on
``candidate_index`` also record their verdict for the candidate version, which promotion re-verifies.

The manifest suite is attached to ``parsed_documents``: the parse stage writes each document's parse
failure into the manifest, so the parse-failure rate exists only once parsing ran, and a blocking
check there stops chunking, indexing and promotion in the same run.
"""

from __future__ import annotations

import dagster as dg

from assets.index import candidate_index
from assets.ingest import enriched_chunks, parsed_documents
from ingest_platform import gates, quality
from ingest_platform.index import CANDIDATE
from assets import metadata as m
from resources import IndexStoreResource, PlatformSettings

from .gating import gate_result

_EXPECTATION_COLUMNS = [
    ("in_words", "string", "what is required, and what was found"),
    ("success", "bool", "met"),
    ("expectation", "string", "the great-expectations expectation"),
    ("column", "string", ""),
    ("unexpected_count", "int", "rows that break it"),
    ("unexpected_percent", "float", "rows that break it, percent"),
    ("mostly", "float", "share of rows that must meet it (GX's mostly)"),
]
# Settings and other constants: text, so the Plots tab charts only what trends.
_CONSTANT_PREFIXES = ("max_", "min_", "expected_", "norm_tolerance", "default_deny", "model", "indexes")


def _observed(key: str, value) -> tuple[str, object]:
    """A suite's own number with its unit in the name: ratios become percent."""
    for suffix in ("_rate", "_ratio"):
        if key.endswith(suffix) and isinstance(value, int | float) and not isinstance(value, bool):
            return key[: -len(suffix)] + "_percent", round(100.0 * value, 3)
    return key, value


def quality_metadata(result: quality.QualityResult) -> dict:
    meta: dict = {"blocks_promotion": m.text("yes" if result.blocking else "no (warning only)")}
    stats = result.statistics
    if isinstance(stats.get("success_percent"), int | float):
        meta["expectations_met_percent"] = stats["success_percent"]
    meta["expectations_failed"] = int(stats.get("unsuccessful_expectations") or 0)
    for key, value in result.observed.items():
        key, value = _observed(key, value)
        if isinstance(value, bool | int | float | str) and key.startswith(_CONSTANT_PREFIXES):
            meta[key] = m.text(value)
        elif isinstance(value, bool | int | float | str):
            meta[key] = value
        elif isinstance(value, dict | list):
            meta[key] = dg.MetadataValue.json(value)
    meta["expectations"] = m.table(result.expectations, _EXPECTATION_COLUMNS)
    meta["failing_examples"] = m.inferred(result.failing_examples)
    return meta


def _description(result: quality.QualityResult) -> str:
    """Plain words first, GX's names after (in brackets) for whoever debugs the suite."""
    if result.passed:
        return f"all {result.statistics.get('evaluated_expectations', 0)} requirements met"
    what = ("blocking: the new index is not promoted" if result.blocking else
            "warning only ([quality] blocking does not include this check): the run goes on")
    failed = [e for e in result.expectations if not e["success"]]
    words = "; ".join(e.get("in_words") or e["expectation"] for e in failed)
    return f"{what}. Not met: {words} [GX: {', '.join(result.failed_expectations)}]"


def _severity(result: quality.QualityResult) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if result.blocking else dg.AssetCheckSeverity.WARN


def to_check_result(result: quality.QualityResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=result.passed, severity=_severity(result), metadata=quality_metadata(result),
                               description=_description(result))


def gated_check_result(home, version: int, result: quality.QualityResult) -> dg.AssetCheckResult:
    """A check on the candidate index: its verdict is recorded for ``version``. A non-blocking check
    records a passing gate (with what it found) so a warning never holds promotion back."""
    meta = quality_metadata(result)
    if result.blocking:
        return gate_result(home, version, result.name, result.passed, meta, description=_description(result))
    plain = {k: v for k, v in meta.items() if isinstance(v, int | float | str | bool)}
    gates.record(home, version, result.name, True, {**plain, "check_passed": result.passed, "blocking": False})
    return dg.AssetCheckResult(passed=result.passed, severity=_severity(result),
                               metadata={"index_version": version, **meta}, description=_description(result))


@dg.asset_check(asset=parsed_documents, name=quality.MANIFEST, blocking=True,
                description="At least [quality] min_documents documents, and at most "
                            "[quality] max_parse_failure_rate of them failed (a GX suite on the manifest "
                            "after parsing). Whether a failure blocks is set by [quality] blocking; the "
                            "result says which.")
def manifest_quality(platform: PlatformSettings) -> dg.AssetCheckResult:
    return to_check_result(quality.check_manifest(platform.get()))


@dg.asset_check(asset=enriched_chunks, name=quality.CHUNKS, blocking=True,
                description="GX suite on the enriched chunks: text present, token counts within "
                            "[1, max_tokens], unique chunk ids, doc_id/source_uri/title/format present, "
                            "access groups present (non-empty unless default-deny), duplicate-text ratio "
                            "at most [quality] max_duplicate_text_ratio.")
def chunks_quality(platform: PlatformSettings) -> dg.AssetCheckResult:
    return to_check_result(quality.check_chunks(platform.get()))


@dg.asset_check(asset=candidate_index, name=quality.EMBEDDINGS, blocking=True,
                description="GX suite on the candidate version's stored vectors: the embedding model's "
                            "dimension, finite values only, unit L2 norm within [quality] norm_tolerance.")
def embeddings_quality(platform: PlatformSettings, index_store: IndexStoreResource) -> dg.AssetCheckResult:
    s = platform.get()
    version = index_store.store.version_of(CANDIDATE)
    return gated_check_result(s.state, version, quality.check_embeddings(s, version))


@dg.asset_check(asset=candidate_index, name=quality.INDEX, blocking=True,
                description="GX suite on the candidate version: row count equals the enriched chunk "
                            "count, unique chunk ids, a full-text index on text, no unindexed rows.")
def index_quality(platform: PlatformSettings, index_store: IndexStoreResource) -> dg.AssetCheckResult:
    s = platform.get()
    version = index_store.store.version_of(CANDIDATE)
    return gated_check_result(s.state, version, quality.check_index(s, version))


QUALITY_CHECKS = [manifest_quality, chunks_quality, embeddings_quality, index_quality]
