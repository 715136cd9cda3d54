"""Dagster asset checks: index consistency, freshness, data quality and the eval gate."""
