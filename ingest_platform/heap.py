"""Give memory the process no longer uses back to the operating system.

Why: a build's resident size is set by what the allocators keep, not by what is live. glibc keeps
freed pages in per-thread arenas (torch's activations, LanceDB's writer threads) and Arrow's
memory pool (mimalloc in its Linux wheels) keeps freed segments for reuse, so each stage started on top of the
previous stage's peak. torch's activations for batches of varying lengths fragmented glibc's
heap until the embed stage's resident size crept with the number of batches: at 10x SciFact it
peaked at 2,464 MB without a trim after each saved part and 1,671 MB with it (``benchmarks/
results/ingest.json``). On the 10x state, reading the indexable shards with their vectors left
126 MB free in Arrow's pool with nothing live in it (``docs/scaling.md``).
"""

from __future__ import annotations

import functools

__all__ = ["release_free_heap"]


def release_free_heap() -> None:
    """Return the C heap's free pages (glibc ``malloc_trim``; elsewhere a no-op) and Arrow's pool's
    unused memory to the OS. Costs a few milliseconds; called after each stage and after the
    large native steps inside one (the index write, the full-text index, the gates' reads)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")  # runs ldconfig: once per process
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
