"""The production loop's asset: a daily, stratified sample of production queries for a person.

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation by identity.
"""

import json

import dagster as dg

from ingest_platform import review, state
from ingest_platform.traces import now  # honours INGEST_PLATFORM_NOW (tests, replaying a day)
from resources import PlatformSettings

GROUP = "serving"

REVIEW_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("stratum", "string", description="no_hits, low_score, slow or random"),
    dg.TableColumn("query", "string"),
    dg.TableColumn("asked", "int", description="times asked in the window"),
    dg.TableColumn("hits", "int"),
    dg.TableColumn("top_similarity", "float", description="cosine of the best vector candidate"),
    dg.TableColumn("latency_ms", "float"),
    dg.TableColumn("top_docs", "string"),
    dg.TableColumn("groups", "string"),
    dg.TableColumn("trace_id", "string", description="for `ingest-platform feedback TRACE_ID`"),
])




@dg.asset(group_name=GROUP, kinds={"python"})
def review_queue(context: dg.AssetExecutionContext, platform: PlatformSettings) -> dg.MaterializeResult:
    """A stratified sample of the last day's production queries (from the query traces) for a
    person to look at: queries with no hits, with a low top score, slow ones, and random ones.
    Judge them with ``ingest-platform feedback TRACE_ID --doc DOC_ID --relevant yes|no``; the
    monitoring checks on this asset watch the same traces over the last week."""
    s = platform.get()
    queue = review.review_queue(s, now=now())
    path = state.review(s.state, queue.end[:10])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(queue.to_json(), indent=1))
    records = [dg.TableRecord({c.name: getattr(item, c.name) for c in REVIEW_COLUMNS.columns}) for item in queue.items]
    context.log.info(f"review sample: {len(queue.items)} of {queue.distinct} distinct queries {queue.strata}")
    return dg.MaterializeResult(metadata={
        "sample": dg.MetadataValue.table(records, schema=REVIEW_COLUMNS),
        "queries": queue.queries, "distinct_queries": queue.distinct, "sampled": len(queue.items),
        **{f"stratum/{k}": v for k, v in queue.strata.items()},
        "window": f"{queue.start} .. {queue.end}",
        "file": dg.MetadataValue.path(str(path)),
    })
