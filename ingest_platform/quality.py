"""Data-quality suites on the pipeline's real tables, run with great-expectations (GX Core 1.x).

Each suite builds a pandas frame from a stage's output, validates it in an ephemeral GX context and
returns a ``QualityResult``: passed, GX's statistics, one line per expectation, and a few failing rows.

- manifest: at least ``min_documents`` documents; the share of failed documents (read or parse
  failures; deleted rows left out) at most ``max_parse_failure_rate`` (``status`` not in {failed},
  with ``mostly``). Parse failures are written into the manifest by the parse stage, so this suite
  runs after parsing.
- chunks (the enriched chunks): text present and not blank; token counts in [1, max_tokens]; chunk
  ids present and unique; doc_id, source_uri, title and format present and not blank; access groups
  present (never null) and, unless default-deny is configured, non-empty: without default-deny every
  chunk gets at least the default groups, so an empty list can only be a bug, whereas with
  default-deny (``default_access_groups = []``) an empty list is the policy working (nobody may read
  the document), so it is allowed and counted as ``chunks_visible_to_nobody``; duplicate-text ratio
  (1 - distinct normalised texts / chunks) at most ``max_duplicate_text_ratio``.
- embeddings (read back from the candidate LanceDB version): every vector has the dimension of the
  model recorded with the table, only finite values, and an L2 norm within ``norm_tolerance`` of 1.
- index: the candidate version's row count equals the enriched chunk count, chunk ids are unique,
  a full-text index exists on ``text``, and no index has unindexed rows (the sync indexes every write).

``import great_expectations`` costs seconds, so it happens inside the suites, never when this module
(or anything on the query path) is imported.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ingest_platform.config import Settings
from ingest_platform.heap import release_free_heap
from ingest_platform.quality_words import in_words

log = logging.getLogger(__name__)

MANIFEST, CHUNKS, EMBEDDINGS, INDEX = "manifest_quality", "chunks_quality", "embeddings_quality", "index_quality"


@dataclass
class QualityResult:
    name: str
    passed: bool
    blocking: bool
    statistics: dict[str, Any]  # GX: evaluated / successful / unsuccessful expectations, success %
    expectations: list[dict]  # one per expectation: what, column, success, observed / unexpected
    failing_examples: list[dict]
    observed: dict[str, Any] = field(default_factory=dict)  # the suite's own numbers (rows, rates)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def failed_expectations(self) -> list[str]:
        return [e["expectation"] + (f"({e['column']})" if e.get("column") else "") for e in self.expectations
                if not e["success"]]


# ---- GX plumbing --------------------------------------------------------------------------------


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX logs each ephemeral context's docs-site folder at INFO; keep run logs about the data.
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:  # unless someone configured it
        gx_log.setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return gx, gxe, ProgressBarsConfig


def _validate(name: str, df, expectations: list, key: str) -> tuple[dict, list[dict], list]:
    """Validate ``df`` against ``expectations`` in a fresh ephemeral context. Returns GX statistics,
    one summary per expectation, and the unexpected rows' ``key`` values per failed expectation."""
    gx, _, ProgressBarsConfig = _gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_def = (context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(name)
                 .add_batch_definition_whole_dataframe("whole"))
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    # SUMMARY keeps the result bounded (20 unexpected rows per expectation) on big tables.
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
    if key in df.columns:
        result_format["unexpected_index_column_names"] = [key]
    result = batch.validate(suite, result_format=result_format)
    summaries, unexpected = [], []
    for r in result.results:
        cfg = r.expectation_config
        kwargs = cfg.kwargs
        res = r.result or {}
        error = (r.exception_info or {}).get("exception_message") if (r.exception_info or {}).get("raised_exception") else None
        summaries.append({
            "in_words": in_words(cfg.type, kwargs, res, bool(r.success)),
            "expectation": cfg.type, "column": kwargs.get("column"), "success": bool(r.success),
            "observed": _plain(res.get("observed_value")), "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": None if res.get("unexpected_percent") is None else round(res["unexpected_percent"], 3),
            "mostly": kwargs.get("mostly"), **({"error": error} if error else {}),
        })
        if not r.success:
            keys = [row.get(key) for row in res.get("partial_unexpected_index_list") or [] if isinstance(row, dict)]
            unexpected.append((cfg.type, kwargs.get("column"), keys))
    stats = {k: _plain(v) for k, v in (result.statistics or {}).items()}
    return stats, summaries, unexpected


def _plain(value: Any) -> Any:
    """JSON-friendly: numpy scalars to Python numbers, long values cut short."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value[:20]]
    if isinstance(value, str) and len(value) > 300:
        return value[:297] + "..."
    return value


def _merge_stats(*stats: dict) -> dict:
    total = {k: sum(s.get(k, 0) for s in stats) for k in ("evaluated_expectations", "successful_expectations",
                                                           "unsuccessful_expectations")}
    n = total["evaluated_expectations"]
    total["success_percent"] = round(100.0 * total["successful_expectations"] / n, 3) if n else 100.0
    return total


def _examples(df, unexpected: list, key: str, columns: list[str], limit: int) -> list[dict]:
    """The first ``limit`` failing rows (by ``key``) across the failed expectations, with why."""
    out: list[dict] = []
    if limit <= 0:
        return out
    by_key = None
    if key in df.columns:
        by_key = df.drop_duplicates(subset=[key]).set_index(key, drop=False)
    for what, column, keys in unexpected:
        for k in keys:
            if len(out) >= limit:
                return out
            row = {"failed": what + (f"({column})" if column else "")}
            if by_key is not None and k in by_key.index:
                rec = by_key.loc[k]
                row.update({c: _cell(rec[c]) for c in columns if c in by_key.columns})
            else:
                row[key] = _cell(k)
            out.append(row)
    return out


def _cell(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    value = _plain(value)
    if isinstance(value, str) and len(value) > 120:
        return value[:117] + "..."
    return value


# ---- suites -------------------------------------------------------------------------------------


def check_manifest(settings: Settings) -> QualityResult:
    import pandas as pd

    from ingest_platform import manifest as mf

    _, gxe, _ = _gx()
    q = settings.quality
    table = mf.load_manifest(settings.state).select(["doc_id", "source", "format", "status", "reason"])
    df = table.to_pandas()
    df = df[df["status"] != "deleted"].reset_index(drop=True) if len(df) else pd.DataFrame(columns=table.column_names)
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=q.min_documents),
        gxe.ExpectColumnValuesToNotBeInSet(column="status", value_set=["failed"], mostly=1.0 - q.max_parse_failure_rate),
    ]
    stats, summaries, unexpected = _validate(MANIFEST, df, expectations, "doc_id")
    failed = df[df["status"] == "failed"]
    rate = len(failed) / len(df) if len(df) else 0.0
    reasons: dict[str, int] = {}
    for reason in failed["reason"].fillna("unknown"):
        kind = str(reason).split(":")[0][:60]
        reasons[kind] = reasons.get(kind, 0) + 1
    return QualityResult(
        MANIFEST, all(s["success"] for s in summaries), q.is_blocking(MANIFEST), stats, summaries,
        _examples(df, unexpected, "doc_id", ["doc_id", "format", "reason"], q.max_examples),
        {"documents": len(df), "failed_documents": len(failed), "parse_failure_rate": round(rate, 4),
         "max_parse_failure_rate": q.max_parse_failure_rate, "failure_reasons": reasons},
    )


def _chunk_frame(table) -> "pd.DataFrame":
    """One shard's chunks as the chunks suite validates them, without their full text: ``text`` is
    the stripped start of the text (null stays null), ``text_normalised`` a 64-bit key of the
    whitespace- and case-normalised text (equal texts, equal keys), and the groups are counted.
    So the suite holds a few columns of small values per chunk, not the corpus's text."""
    import hashlib

    import pandas as pd

    texts = table["text"].to_pylist()
    df = table.drop_columns(["text", "access_groups"]).to_pandas()
    df["text"] = [None if t is None else t.strip()[:120] for t in texts]
    df["text_normalised"] = [None if t is None else int.from_bytes(hashlib.blake2b(
        " ".join(t.split()).casefold().encode(), digest_size=8).digest(), "little", signed=True) for t in texts]
    df["access_groups"] = table["access_groups"].to_pylist()
    df["access_group_count"] = df["access_groups"].map(lambda g: None if g is None else len(g))
    return df


def check_chunks(settings: Settings, table=None) -> QualityResult:
    import pandas as pd

    from ingest_platform import pipeline

    _, gxe, _ = _gx()
    q = settings.quality
    cols = ["chunk_id", "doc_id", "text", "token_count", "source_uri", "title", "format", "access_groups"]
    parts = [table] if table is not None else (t for _, t in pipeline.indexable_table(settings).iter(cols))
    frames = [_chunk_frame(t.select(cols)) for t in parts]
    df = (pd.concat(frames, ignore_index=True) if frames
          else _chunk_frame(pipeline.indexable_table(settings).schema.empty_table().select(cols)))
    default_deny = not settings.default_access_groups
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="text"),
        gxe.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"),
        gxe.ExpectColumnValuesToNotBeNull(column="token_count"),
        gxe.ExpectColumnValuesToBeBetween(column="token_count", min_value=1, max_value=settings.chunking.max_tokens),
        gxe.ExpectColumnValuesToNotBeNull(column="chunk_id"),
        gxe.ExpectColumnValuesToBeUnique(column="chunk_id"),
    ]
    for column in ("doc_id", "source_uri", "title", "format"):
        expectations += [gxe.ExpectColumnValuesToNotBeNull(column=column),
                         gxe.ExpectColumnValuesToMatchRegex(column=column, regex=r"\S")]
    expectations.append(gxe.ExpectColumnValuesToNotBeNull(column="access_groups"))
    if not default_deny:
        expectations.append(gxe.ExpectColumnValuesToBeBetween(column="access_group_count", min_value=1))
    expectations.append(gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
        column="text_normalised", min_value=1.0 - q.max_duplicate_text_ratio))
    stats, summaries, unexpected = _validate(CHUNKS, df, expectations, "chunk_id")
    n = len(df)
    distinct = df["text_normalised"].nunique(dropna=True)
    duplicate_ratio = 1.0 - distinct / n if n else 0.0
    examples = _examples(df, unexpected, "chunk_id", ["chunk_id", "doc_id", "token_count", "title", "text"], q.max_examples)
    if duplicate_ratio > q.max_duplicate_text_ratio and len(examples) < q.max_examples:
        dups = df[df.duplicated("text_normalised", keep=False)].sort_values("text_normalised")
        for _, rec in dups.head(q.max_examples - len(examples)).iterrows():
            examples.append({"failed": "duplicate text", "chunk_id": rec["chunk_id"], "doc_id": rec["doc_id"],
                             "text": _cell(rec["text"])})
    nobody = int((df["access_group_count"] == 0).sum())
    return QualityResult(
        CHUNKS, all(s["success"] for s in summaries), q.is_blocking(CHUNKS), stats, summaries, examples,
        {"chunks": n, "documents": int(df["doc_id"].nunique()), "duplicate_text_ratio": round(duplicate_ratio, 4),
         "max_duplicate_text_ratio": q.max_duplicate_text_ratio, "max_tokens": settings.chunking.max_tokens,
         "token_count_max": int(df["token_count"].max()) if n else 0,
         "chunks_visible_to_nobody": nobody, "default_deny": default_deny},
    )


def _vector_frame(batch) -> "pd.DataFrame":
    """Per vector of one record batch: its dimension, non-finite values and norm (float32, as
    stored). The embeddings suite reads the index a batch at a time, never every vector at once."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if batch is None:
        return pd.DataFrame({"chunk_id": [], "doc_id": [], "dimension": [], "non_finite_values": [], "norm": []})
    vectors = batch.column("vector")
    n = len(vectors)
    dims = np.zeros(n, dtype=np.int64)
    nonfinite = np.zeros(n, dtype=np.int64)
    norms = np.full(n, np.nan)
    if n and pa.types.is_fixed_size_list(vectors.type) and vectors.null_count == 0:
        size = vectors.type.list_size
        mat = vectors.flatten().to_numpy(zero_copy_only=False).reshape(n, size)
        finite = np.isfinite(mat)
        dims[:] = size
        nonfinite[:] = (~finite).sum(axis=1)
        norms = np.where(finite.all(axis=1), np.linalg.norm(np.where(finite, mat, 0.0), axis=1), np.nan)
    elif n:  # nulls or variable-length lists: row by row
        for i in range(n):
            if not vectors[i].is_valid:
                continue
            v = np.asarray(vectors[i].values.to_numpy(zero_copy_only=False), dtype=np.float64)
            dims[i] = len(v)
            nonfinite[i] = int((~np.isfinite(v)).sum())
            norms[i] = float(np.linalg.norm(v)) if not nonfinite[i] else np.nan
    return pd.DataFrame({"chunk_id": batch.column("chunk_id").to_pylist(), "doc_id": batch.column("doc_id").to_pylist(),
                         "dimension": dims, "non_finite_values": nonfinite, "norm": norms})


def check_embeddings(settings: Settings, ref: str | int = "candidate", expected_dim: int | None = None) -> QualityResult:
    import pandas as pd

    from ingest_platform.index import read_in_slices
    from ingest_platform.pipeline import index_store

    _, gxe, _ = _gx()
    q = settings.quality
    store = index_store(settings)
    version = store.version_of(ref)
    table = store.checkout(version)
    model_id, model_spec = store.model(table)
    if expected_dim is None:
        from ingest_platform.embedding import get_embedder

        expected_dim = get_embedder(model_spec, settings.embedding.device).dim
    frames = [_vector_frame(batch) for batch in read_in_slices(table, ["chunk_id", "doc_id", "vector"])]
    df = pd.concat(frames, ignore_index=True) if frames else _vector_frame(None)
    del frames
    release_free_heap()  # the slices' buffers: the frame holds five small columns, not the vectors
    n = len(df)
    tol = q.norm_tolerance
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="dimension", value_set=[int(expected_dim)]),
        gxe.ExpectColumnValuesToBeInSet(column="non_finite_values", value_set=[0]),
        gxe.ExpectColumnValuesToNotBeNull(column="norm"),
        gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=1.0 - tol, max_value=1.0 + tol),
    ]
    stats, summaries, unexpected = _validate(EMBEDDINGS, df, expectations, "chunk_id")
    finite_norms = df["norm"].dropna()
    return QualityResult(
        EMBEDDINGS, all(s["success"] for s in summaries), q.is_blocking(EMBEDDINGS), stats, summaries,
        _examples(df, unexpected, "chunk_id", ["chunk_id", "doc_id", "dimension", "non_finite_values", "norm"], q.max_examples),
        {"index_version": version, "vectors": n, "model": model_id, "expected_dimension": int(expected_dim),
         "norm_min": round(float(finite_norms.min()), 6) if len(finite_norms) else None,
         "norm_max": round(float(finite_norms.max()), 6) if len(finite_norms) else None,
         "vectors_with_non_finite_values": int((df["non_finite_values"] > 0).sum()), "norm_tolerance": tol},
    )


def check_index(settings: Settings, ref: str | int = "candidate") -> QualityResult:
    import pandas as pd

    from ingest_platform import pipeline
    from ingest_platform.index import _scan

    _, gxe, _ = _gx()
    q = settings.quality
    store = pipeline.index_store(settings)
    version = store.version_of(ref)
    table = store.checkout(version)
    enriched = pipeline.load_enriched(settings, ["chunk_id"]).column("chunk_id").to_pylist()
    rows = pd.DataFrame({"chunk_id": _scan(table, ["chunk_id"]).column("chunk_id").to_pylist()})
    stats_rows, sum_rows, unexpected_rows = _validate(f"{INDEX}_rows", rows, [
        gxe.ExpectTableRowCountToEqual(value=len(enriched)),
        gxe.ExpectColumnValuesToBeUnique(column="chunk_id"),
    ], "chunk_id")
    indices = pd.DataFrame([
        {"index": ix.name, "column": ",".join(ix.columns), "type": str(ix.index_type),
         "unindexed_rows": int(table.index_stats(ix.name).num_unindexed_rows)}
        for ix in table.list_indices()
    ], columns=["index", "column", "type", "unindexed_rows"])
    stats_ix, sum_ix, unexpected_ix = _validate(f"{INDEX}_indexes", indices, [
        gxe.ExpectColumnDistinctValuesToContainSet(column="column", value_set=["text"]),
        gxe.ExpectColumnValuesToBeBetween(column="unindexed_rows", min_value=0, max_value=0),
    ], "index")
    summaries = sum_rows + sum_ix
    examples: list[dict] = []
    have, want = set(rows["chunk_id"]), set(enriched)
    for cid in sorted(want - have)[: q.max_examples]:
        examples.append({"failed": "enriched chunk missing from the index", "chunk_id": cid})
    for cid in sorted(have - want)[: max(0, q.max_examples - len(examples))]:
        examples.append({"failed": "index row not among the enriched chunks", "chunk_id": cid})
    examples += _examples(rows, [u for u in unexpected_rows if u[0] == "expect_column_values_to_be_unique"],
                          "chunk_id", ["chunk_id"], max(0, q.max_examples - len(examples)))
    examples += _examples(indices, unexpected_ix, "index", ["index", "column", "unindexed_rows"],
                          max(0, q.max_examples - len(examples)))
    return QualityResult(
        INDEX, all(s["success"] for s in summaries), q.is_blocking(INDEX), _merge_stats(stats_rows, stats_ix),
        summaries, examples,
        {"index_version": version, "rows": len(rows), "enriched_chunks": len(enriched),
         "missing_chunks": len(want - have), "extra_rows": len(have - want),
         "unindexed_rows": int(indices["unindexed_rows"].sum()) if len(indices) else 0,
         "indexes": ", ".join(indices["index"]) if len(indices) else "none"},
    )


SUITES = {MANIFEST: check_manifest, CHUNKS: check_chunks, EMBEDDINGS: check_embeddings, INDEX: check_index}
