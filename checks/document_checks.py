"""A warning, never a gate: documents that could not be indexed.

One bad file must never stop a run, so this check is not blocking; but a failed document is news a
person must see, so the check fails with WARN severity and the asset graph turns yellow instead of
staying green. The failures table lists every failed document with its reason.
"""

import dagster as dg

from assets import metadata as meta
from assets.ingest import parsed_documents
from ingest_platform import manifest as mf
from resources import PlatformSettings


@dg.asset_check(asset=parsed_documents, name="documents_failed", blocking=False,
                description="Warns (does not block) when any document could not be indexed: listing or "
                            "parsing failed. The run goes on; the failed documents and their reasons are "
                            "listed here and on parsed_documents.")
def documents_failed(platform: PlatformSettings) -> dg.AssetCheckResult:
    s = platform.get()
    summary = mf.summarize(mf.load_manifest(s.state))
    failures, total = summary["failures"], summary["total"]
    percent = round(100.0 * len(failures) / total, 2) if total else 0.0
    if failures:
        first = failures[0]
        words = (f"{len(failures)} of {total} documents could not be indexed ({percent:g}%); e.g. "
                 f"{first['doc_id']}: {first['reason']}. Every other document was indexed.")
    else:
        words = f"all {total} documents were parsed"
    return dg.AssetCheckResult(
        passed=not failures, severity=dg.AssetCheckSeverity.WARN, description=words,
        metadata={"documents": total, "documents_failed": len(failures), "failed_percent": percent,
                  "failures": meta.failures_table(failures)},
    )


DOCUMENT_CHECKS = [documents_failed]
