"""Small renderers for the summaries users read: Markdown tables for the Dagster UI and CLI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:.4g}"
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= 160 else text[:157] + "..."


def md_table(rows: Iterable[dict], columns: Sequence[str] | None = None, limit: int = 50) -> str:
    rows = list(rows)
    if not rows:
        return "_(none)_"
    columns = list(columns or rows[0].keys())
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"\n_{len(rows) - limit} more rows not shown_")
    return "\n".join(out)
