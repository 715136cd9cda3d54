"""Great-expectations results said in plain words, with units, beside GX's own names.

``expect_column_values_to_not_be_in_set(status) mostly 0.8`` means "at most 20% of documents
failed"; a person reading a check result in the UI should not have to translate. Unknown
expectation types fall back to GX's name, so a new expectation is never hidden.
"""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}%"


def _set(values: Any) -> str:
    return ", ".join(str(v) for v in values or [])


def in_words(kind: str, kwargs: dict, result: dict, success: bool) -> str:
    """One sentence: what is required, and what was found."""
    col = kwargs.get("column") or "rows"
    observed = result.get("observed_value")
    bad = result.get("unexpected_count")
    bad_pct = result.get("unexpected_percent")
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if kind == "expect_table_row_count_to_be_between":
        need = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        return f"{need} rows (found {observed})"
    if kind == "expect_table_row_count_to_equal":
        return f"exactly {kwargs.get('value')} rows (found {observed})"
    if kind == "expect_column_values_to_not_be_in_set":
        allowed = 100.0 * (1.0 - (kwargs.get("mostly") or 1.0))
        return (f"at most {_pct(allowed)} of rows with {col} {_set(kwargs.get('value_set'))} "
                f"(found {_pct(bad_pct)}, {bad or 0} rows)")
    if kind == "expect_column_values_to_be_in_set":
        return f"every {col} is {_set(kwargs.get('value_set'))} ({bad or 0} rows are not)"
    if kind == "expect_column_values_to_not_be_null":
        return f"every row has a {col} ({bad or 0} missing)"
    if kind == "expect_column_values_to_match_regex":
        return f"no {col} is blank ({bad or 0} blank)"
    if kind == "expect_column_values_to_be_between":
        need = (f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"between {lo} and {hi}")
        return f"{col} {need} in every row ({bad or 0} rows outside)"
    if kind == "expect_column_values_to_be_unique":
        return f"every {col} is unique ({bad or 0} duplicated)"
    if kind == "expect_column_proportion_of_unique_values_to_be_between":
        found = None if observed is None else 100.0 * float(observed)
        return f"at least {_pct(100.0 * float(lo or 0))} of {col} values distinct (found {_pct(found)})"
    if kind == "expect_column_distinct_values_to_contain_set":
        return f"{col} includes {_set(kwargs.get('value_set'))}"
    return f"{kind}({col}): {'met' if success else 'not met'}"
