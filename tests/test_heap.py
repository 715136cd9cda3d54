"""Memory a stage freed goes back to the OS (``ingest_platform.heap``), measured in a fresh process
so no other test's heap is counted."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .conftest import REPO

_CHILD = textwrap.dedent("""
    import json, os
    import numpy as np, pyarrow as pa
    from ingest_platform.heap import release_free_heap

    def rss_mb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    base = rss_mb()
    arrays = [pa.array(np.arange(i, i + 100_000, dtype=np.int64)).cast(pa.float64()) for i in range(300)]
    allocated = pa.total_allocated_bytes() / 2**20
    del arrays
    freed = rss_mb()
    release_free_heap()
    print(json.dumps({"base": base, "allocated": allocated, "freed": freed, "released": rss_mb(),
                      "live": pa.total_allocated_bytes()}))
""")


def test_memory_freed_in_arrow_goes_back_to_the_os():
    """Arrow's pool keeps freed buffers for reuse, so a stage that read the corpus through Arrow
    would leave the next stage starting on top of its peak; ``release_free_heap`` gives at least
    half of it back."""
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    assert m["allocated"] > 200 and m["live"] == 0
    assert m["released"] < m["freed"] - 0.5 * m["allocated"], m
