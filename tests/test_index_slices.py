"""Reading a whole index version in slices (``index.read_in_slices``): exactly the version's rows,
with memory that does not grow with the table (measured in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import lancedb
import numpy as np
import pyarrow as pa

from ingest_platform.index import read_in_slices

from .conftest import REPO


def _rows(ids: list[str], dim: int = 4) -> pa.Table:
    flat = pa.array(np.random.default_rng(0).random(len(ids) * dim, dtype=np.float32))
    return pa.table({"chunk_id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})


def test_slices_hold_exactly_the_checked_out_versions_rows(tmp_path):
    """Offsets count the version's live rows: deleted rows and rows of a later version are not read."""
    table = lancedb.connect(tmp_path).create_table("chunks", _rows([f"a{i}" for i in range(2500)]))
    table.add(_rows([f"b{i}" for i in range(300)]))
    table.delete("chunk_id LIKE 'a1%' OR chunk_id = 'b7'")
    version = table.version
    table.add(_rows(["later"]))
    table.checkout(version)

    batches = list(read_in_slices(table, ["chunk_id", "vector"], rows=512))
    got = [c for b in batches for c in b.column("chunk_id").to_pylist()]
    scanned = table.search().select(["chunk_id"]).limit(None).to_arrow().column("chunk_id").to_pylist()
    assert sorted(got) == sorted(scanned) and len(set(got)) == len(got) == table.count_rows()
    assert "later" not in got and "b7" not in got and "a10" not in got
    assert max(b.num_rows for b in batches) == 512 and batches[0].schema.names == ["chunk_id", "vector"]

    empty = lancedb.connect(tmp_path).create_table("empty", _rows([]).slice(0, 0))
    assert list(read_in_slices(empty, ["chunk_id"])) == []


_CHILD = textwrap.dedent("""
    import json, os, sys, threading
    import lancedb, numpy as np, pyarrow as pa
    from ingest_platform.heap import release_free_heap
    from ingest_platform.index import read_in_slices

    def rss_mb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    n, dim = 100_000, 384
    db = lancedb.connect(sys.argv[1])
    def parts():
        rng = np.random.default_rng(0)
        for start in range(0, n, 5_000):
            flat = pa.array(rng.random(5_000 * dim, dtype=np.float32))
            yield pa.record_batch({"chunk_id": [f"c{i}" for i in range(start, start + 5_000)],
                                   "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
    schema = next(parts()).schema
    table = db.create_table("chunks", pa.RecordBatchReader.from_batches(schema, parts()))
    table = db.open_table("chunks")
    next(read_in_slices(table, ["chunk_id", "vector"], rows=16))  # the reader's own start-up, not counted
    release_free_heap()
    base, peak, done = rss_mb(), [0.0], threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            done.wait(0.005)
    sampler = threading.Thread(target=sample)
    sampler.start()
    norms = [np.linalg.norm(b.column("vector").flatten().to_numpy().reshape(-1, dim), axis=1).size
             for b in read_in_slices(table, ["chunk_id", "vector"])]
    done.set()
    sampler.join()
    print(json.dumps({"rows": sum(norms), "vectors_mb": n * dim * 4 / 2**20, "growth_mb": peak[0] - base}))
""")


def test_reading_every_vector_holds_a_slice_not_the_table(tmp_path):
    """The embeddings gate reads every vector of a version. A LanceDB scan of this table (146 MB of
    vectors) grew the reader by 93 to 187 MB; slices grew it by about 21 MB."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "db")], cwd=REPO, capture_output=True,
                         text=True, check=True)
    m = json.loads(out.stdout)
    assert m["rows"] == 100_000
    assert m["growth_mb"] < m["vectors_mb"] / 4, m
