"""Benchmarks of the ingest platform: retrieval quality (BEIR), ingest throughput and memory,
incremental cost, query latency. Each one is a module run with ``python -m benchmarks.<name>``; each
prints a table and writes JSON (``benchmarks/results/`` by default). See ``benchmarks/README.md``."""
