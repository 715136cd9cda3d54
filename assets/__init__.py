"""Dagster software-defined assets: one per pipeline stage, each a thin call into ingest_platform."""
