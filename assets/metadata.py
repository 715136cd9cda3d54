"""Asset metadata as a dashboard: typed tables with column schemas (the UI renders them as sortable
tables, not Markdown behind a button), and numbers kept numeric so the Plots tab charts them.

Conventions: a name carries its unit (``seconds``, ``docs_per_second``, ``percent``, ``bytes``);
counts and timings are ints/floats (they trend, so they are plotted); settings and other constants
are text, so the Plots tab is not filled with flat lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import dagster as dg

from ingest_platform.changes import DocChange

# (name, type, description); types are Dagster's table column types: string, int, float, bool.
Column = tuple[str, str, str]

CHANGE_COLUMNS: list[Column] = [
    ("document", "string", "source name : path of the document"),
    ("status", "string", "new, changed, deleted, or failed (with its reason)"),
    ("size_bytes_before", "int", "file size before this run"),
    ("size_bytes_after", "int", "file size now"),
    ("hash_before", "string", "first 12 hex digits of the content SHA-256 before this run"),
    ("hash_after", "string", "first 12 hex digits of the content SHA-256 now"),
    ("reason", "string", "why a failed document could not be indexed; what changed of a changed one"),
]
CHUNK_COLUMNS: list[Column] = [
    ("chunks_added", "int", "chunks whose text is new in the index"),
    ("chunks_removed", "int", "chunks whose text left the index"),
    ("chunks_kept", "int", "chunks whose text was already indexed and stays"),
]
FAILURE_COLUMNS: list[Column] = [
    ("document", "string", "source name : path of the document"),
    ("reason", "string", "why it could not be indexed"),
    ("source_uri", "string", "where it was read from"),
]


def _cell(value):
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    text = str(value).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def table(rows: Iterable[dict], columns: Sequence[Column], limit: int = 100) -> dg.TableMetadataValue:
    """A table the UI renders with typed columns; at most ``limit`` rows (say so in a sibling count)."""
    names = [c[0] for c in columns]
    records = [dg.TableRecord({n: _cell(r.get(n)) for n in names}) for r in list(rows)[:limit]]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def changes_table(changes: Sequence[DocChange], *, files: bool = True, chunks: bool = False,
                  limit: int = 100) -> dg.TableMetadataValue:
    """The ``changes`` table: one row per document this run changed, failures first."""
    columns = [c for c in CHANGE_COLUMNS if files or c[0] in ("document", "status", "reason")]
    if chunks:
        columns = columns[:2] + CHUNK_COLUMNS + columns[2:]
    return table([c.to_dict() for c in changes], columns, limit)


def failures_table(failures: Sequence[dict], limit: int = 100) -> dg.TableMetadataValue:
    return table([{"document": f["doc_id"], **f} for f in failures], FAILURE_COLUMNS, limit)


def inferred(rows: Sequence[dict], descriptions: dict[str, str] | None = None, limit: int = 100) -> dg.TableMetadataValue:
    """A table whose columns are taken from the rows (types from the first non-null value)."""
    descriptions = descriptions or {}
    names: list[str] = []
    for r in rows:
        names += [k for k in r if k not in names]
    def kind(name: str) -> str:
        for r in rows:
            v = r.get(name)
            if isinstance(v, bool):
                return "bool"
            if isinstance(v, int):
                return "int"
            if isinstance(v, float):
                return "float"
            if v is not None:
                return "string"
        return "string"
    return table(rows, [(n, kind(n), descriptions.get(n, "")) for n in names], limit)


def text(value) -> dg.TextMetadataValue:
    """A constant (a setting, a model name, ``k``): shown, but not charted in the Plots tab."""
    return dg.MetadataValue.text(str(value))


def per_second(count: int | float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds else 0.0
