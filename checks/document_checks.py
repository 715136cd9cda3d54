"""A warning, never a gate: documents that could not be indexed.

One bad file must never stop a run, so this check is not blocking; but a failed document is news a
person must see, so the check fails with WARN severity and the asset graph turns yellow instead of
staying green. The failures table lists every failed document with its reason; the stale table, every
document still served at its last good version because its newest could not be read (an outage, a
save during the run).
"""

import dagster as dg

from assets import metadata as meta
from assets.ingest import parsed_documents
from ingest_platform import manifest as mf
from resources import PlatformSettings


@dg.asset_check(asset=parsed_documents, name="documents_failed", blocking=False,
                description="Warns (does not block) when any document could not be indexed (listing or "
                            "parsing failed) or serves its last good version (its newest could not be "
                            "read). The run goes on; those documents and the reasons are listed here and "
                            "on parsed_documents.")
def documents_failed(platform: PlatformSettings) -> dg.AssetCheckResult:
    s = platform.get()
    summary = mf.summarize(mf.load_manifest(s.state))
    failures, stale, total = summary["failures"], summary["stale"], summary["total"]
    percent = round(100.0 * len(failures) / total, 2) if total else 0.0
    words = []
    if failures:
        first = failures[0]
        words.append(f"{len(failures)} of {total} documents could not be indexed ({percent:g}%); e.g. "
                     f"{first['doc_id']}: {first['reason']}. Every other document was indexed.")
    if stale:
        words.append(f"{len(stale)} serve their last good version (the newest could not be read); e.g. "
                     f"{stale[0]['doc_id']}: {stale[0]['reason']}.")
    return dg.AssetCheckResult(
        passed=not failures and not stale, severity=dg.AssetCheckSeverity.WARN,
        description=" ".join(words) or f"all {total} documents were parsed",
        metadata={"documents": total, "documents_failed": len(failures), "failed_percent": percent,
                  "failures": meta.failures_table(failures), "documents_stale": len(stale),
                  "stale": meta.failures_table(stale)},
    )


DOCUMENT_CHECKS = [documents_failed]
