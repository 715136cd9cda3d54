"""Query latency through the query function, beside the bare LanceDB calls, in the same run.

    python -m benchmarks.query_latency [--home STATE] [--synthetic-chunks 100000] [--queries 300] [--out FILE.json]

Two indexes: the SciFact index the BEIR benchmark builds (``--home``, default
``benchmarks/.work/beir-scifact/state``; built if missing) and a synthetic index of
``--synthetic-chunks`` chunks written with ``IndexStore.sync`` (the platform's own table layout, FTS
and scalar indexes, and the IVF_PQ vector index the platform builds at 100,000 rows), whose texts
are SciFact sentences recombined and whose vectors are random unit vectors: embedding 100,000 texts
on 2 CPU cores would take most of an hour, and vector search cost does not depend on the values.

Per query (SciFact test queries, k=10), interleaved so machine noise hits all alike:
  * bare: the model's ``encode`` of the query (on one torch thread, the faster way here; also
    timed on torch's default threads), LanceDB ``search(vector)`` and ``search(fts)`` on the same
    table version with the same depth and columns the query function asks for, no filter, called
    one after the other;
  * the query function: ``Retriever.search(q, 10, mode=...)`` (result cache off; everything else,
    the access-control prefilter, tracing and fusion included, as configured by default).
Overhead = p50 of the query function / p50 of (embedding + bare calls) - 1 (per query sums; the
query function runs BM25 beside the embedding and vector search in hybrid mode, so it can be below). Then 4 concurrent
clients (threads sharing one Retriever, as a web server would) for each mode: p50/p95/p99 and QPS.

Before that, on the SciFact index (issue 16, "20 ms hybrid queries"):
  * agreement: every SciFact query (train and test) embedded by the torch and the ONNX Runtime
    query encoder (``ingest_platform/query_encoder.py``); min and mean cosine (the bar: >= 0.999);
  * serving configurations, interleaved per query: ``Retriever.search(q, 10)`` with each query
    encoder (torch, onnx), LanceDB's vector search or the in-memory one (``[query]
    memory_search_max_rows``), each vector candidate depth of hybrid mode (``[query]
    vector_candidates``), and the bare calls the function makes with the ONNX encoder (encode,
    vector search, BM25, one after the other, same ACL prefilter) to give the function's overhead:
    on a version held in memory the function fuses ids and scores and reads the winners' columns
    from memory ("in-memory, ids"); "in-memory, every column" is the same calls reading every
    column of every candidate, as it did before. Each row has p50/p95/p99 and
    the nDCG@10 of the same calls (documents ranked by their best chunk among the 10 hits), so a
    faster row that retrieves worse shows it. The encoders' memo of recent texts is off: every call
    embeds.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import (RESULTS, SCIFACT, WORK, load_qrels, load_queries, machine, make_settings,
                               print_table, read_jsonl, write_json)

MODES = ("keyword", "vector", "hybrid")
BARE = ("LanceDB", "in-memory, every column", "in-memory, ids")  # compare_configs' bare hybrid calls


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    xs = sorted(values)
    i = (len(xs) - 1) * p / 100
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def summary(ms: list[float], elapsed: float | None = None) -> dict:
    out = {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99),
           "mean_ms": statistics.fmean(ms) if ms else float("nan")}
    out["qps"] = len(ms) / elapsed if elapsed else 1000 / out["mean_ms"]
    return out


# ---- the synthetic index ------------------------------------------------------------------------


def synthetic_index(home: Path, chunks: int, corpus: Path, seed: int = 3):
    """An index of ``chunks`` rows in the platform's table layout; reused when already there."""
    import pyarrow as pa

    from ingest_platform.embedding import get_embedder
    from ingest_platform import promotion
    from ingest_platform.index import IndexStore
    from ingest_platform.schemas import ENRICHED

    settings = make_settings(home, corpus, "synthetic")
    store = IndexStore(settings.lancedb_uri, settings.index.table, home=settings.state)
    if store.exists() and "production" in store.tags() and store.checkout("production").count_rows() == chunks:
        return settings, 0.0
    if home.exists():
        shutil.rmtree(home)
    settings = make_settings(home, corpus, "synthetic")
    store = IndexStore(settings.lancedb_uri, settings.index.table, home=settings.state)
    started = time.perf_counter()
    rng = random.Random(seed)
    sentences = [s for r in read_jsonl(corpus) for s in (r.get("text") or "").split(". ") if len(s) > 20]
    titles = [r.get("title") or "" for r in read_jsonl(corpus)]
    rows = {name: [] for name in ENRICHED.names}
    for i in range(chunks):
        doc = i // 2
        text = ". ".join(rng.choice(sentences) for _ in range(rng.randint(3, 9))) + "."
        row = {"chunk_id": f"c{i:07d}", "doc_id": f"synthetic:{doc}", "doc_version": "v1", "chunk_index": i % 2,
               "text": text, "text_sha256": f"{i:064x}", "source": "synthetic",
               "source_uri": f"synthetic://{doc}", "title": titles[doc % len(titles)], "heading_path": "",
               "format": "record", "language": "eng", "token_count": len(text.split()),
               "element_types": ["NarrativeText"], "access_groups": ["public"], "sensitive_types": [],
               "sensitive_counts_json": "{}", "redacted": False, "metadata_json": "{}"}
        for name in ENRICHED.names:
            rows[name].append(row.get(name))
    table = pa.table(rows, schema=ENRICHED)
    vecs = np.random.default_rng(seed).standard_normal((chunks, 384), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), 384)
    model = get_embedder(settings.embedding.model, settings.embedding.device, settings.embedding.batch_size)

    def vectors_for(hashes, shard=None):
        return flat  # rows are passed in their original order on a first build

    store.sync(table, vectors_for, dim=384, model_id=model.model_id, model_spec=settings.embedding.model,
               vector_index_min_rows=settings.index.vector_index_min_rows)
    promotion.promote(settings, why="synthetic benchmark index", force_reason="benchmark index: timed, not served")
    return settings, time.perf_counter() - started


# ---- measuring ----------------------------------------------------------------------------------


def measure(settings, texts: list[str], k: int, clients: int, repeat_concurrent: int) -> dict:
    from ingest_platform.embedding import get_embedder
    from ingest_platform.query import _RESULT_COLUMNS, Retriever, access_filter

    q = settings.query
    retriever = Retriever(settings=settings, cache_size=0)
    pinned = retriever._pin()
    retriever._encoder(pinned).memo_size = 0  # every call embeds, as the bare calls do
    table = pinned.table
    embedder = get_embedder(pinned.model_spec, settings.embedding.device)
    depth = {"vector": k, "keyword": k, "hybrid": max(k, q.candidates)}

    import torch

    threads = torch.get_num_threads()
    if embedder._onnx is not None:
        # A model that ships as ONNX: the bare call is ONNX Runtime's, separately loaded.
        from ingest_platform import onnx_encoder

        bare_models = {True: onnx_encoder.for_model(pinned.model_spec, threads=1),
                       False: onnx_encoder.for_model(pinned.model_spec)}

    def bare_embed(text, one_thread=True):
        """``SentenceTransformer.encode`` of the query (ONNX Runtime's run for an ONNX model); on
        one thread by default (the faster way on this machine, see the README), else on the
        library's default thread count."""
        if embedder._onnx is not None:
            t = time.perf_counter()
            vec = bare_models[one_thread].embed([text])[0]
            return vec, (time.perf_counter() - t) * 1000
        model = embedder._model
        if one_thread:
            torch.set_num_threads(1)
        try:
            t = time.perf_counter()
            vec = model.encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]
            return vec, (time.perf_counter() - t) * 1000
        finally:
            torch.set_num_threads(threads)

    acl = access_filter(("public",))

    def bare_vector(vec, n, where=None):
        t = time.perf_counter()
        query = table.search(vec, vector_column_name="vector").distance_type("cosine")
        if where:
            query = query.where(where, prefilter=True)
        query.select([*_RESULT_COLUMNS, "_distance"]).limit(n).to_arrow()
        return (time.perf_counter() - t) * 1000

    def bare_fts(text, n, where=None):
        t = time.perf_counter()
        try:
            query = table.search(text, query_type="fts")
            if where:
                query = query.where(where, prefilter=True)
            query.select([*_RESULT_COLUMNS, "_score"]).limit(n).to_arrow()
        except ValueError:
            pass
        return (time.perf_counter() - t) * 1000

    def function(text, mode):
        t = time.perf_counter()
        retriever.search(text, k, mode=mode)
        return (time.perf_counter() - t) * 1000

    for text in texts[:5]:  # warm-up: model, index caches, FTS posting lists
        for mode in MODES:
            function(text, mode)
        bare_fts(text, k)
        bare_vector(bare_embed(text)[0], k)

    one: dict[str, list[float]] = {m: [] for m in MODES}
    bare: dict[str, list[float]] = {"embed": [], f"embed, {threads} torch threads": [], "vector@k": [], "fts@k": [],
                                    "vector@hybrid": [], "fts@hybrid": [], "vector@k + ACL prefilter": [],
                                    "fts@k + ACL prefilter": []}
    for i, text in enumerate(texts):
        order = list(MODES) + ["bare"]
        order = order[i % len(order):] + order[: i % len(order)]
        for what in order:
            if what == "bare":
                vec, e = bare_embed(text)
                bare["embed"].append(e)
                bare[f"embed, {threads} torch threads"].append(bare_embed(text, one_thread=False)[1])
                bare["vector@k"].append(bare_vector(vec, depth["vector"]))
                bare["fts@k"].append(bare_fts(text, depth["keyword"]))
                bare["vector@hybrid"].append(bare_vector(vec, depth["hybrid"]))
                bare["fts@hybrid"].append(bare_fts(text, depth["hybrid"]))
                bare["vector@k + ACL prefilter"].append(bare_vector(vec, depth["vector"], acl))
                bare["fts@k + ACL prefilter"].append(bare_fts(text, depth["keyword"], acl))
            else:
                one[what].append(function(text, what))
    ref = {
        "keyword": bare["fts@k"],
        "vector": [e + v for e, v in zip(bare["embed"], bare["vector@k"])],
        "hybrid": [e + v + f for e, v, f in zip(bare["embed"], bare["vector@hybrid"], bare["fts@hybrid"])],
    }
    out = {"single_client": {m: summary(one[m]) for m in MODES},
           "bare": {name: summary(v) for name, v in bare.items()},
           "bare_reference": {m: summary(ref[m]) for m in MODES},
           "overhead_p50": {m: pct(one[m], 50) / pct(ref[m], 50) - 1 for m in MODES},
           # The same, against bare calls that carry the access-control prefilter the query
           # function must apply: what is left is the Python layer (checks, fusion, hits, trace).
           "overhead_p50_vs_prefiltered": {
               "keyword": pct(one["keyword"], 50) / pct(bare["fts@k + ACL prefilter"], 50) - 1,
               "vector": pct(one["vector"], 50) / pct([e + v for e, v in zip(bare["embed"], bare["vector@k + ACL prefilter"])], 50) - 1,
           },
           "depth": depth}

    # Concurrent clients: each thread takes the next query; latency per query, QPS overall.
    jobs = texts * repeat_concurrent
    out["concurrent"] = {"clients": clients}
    for mode in (*MODES, "bare hybrid"):
        def call(text, mode=mode):
            if mode == "bare hybrid":
                t = time.perf_counter()
                with embedder._lock:  # the model is shared by the threads, as in the query function
                    vec, _ = bare_embed(text)
                bare_vector(vec, depth["hybrid"])
                bare_fts(text, depth["hybrid"])
                return (time.perf_counter() - t) * 1000
            return function(text, mode)

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            ms = list(pool.map(call, jobs))
        out["concurrent"][mode] = summary(ms, time.perf_counter() - started)
    return out


def agreement(settings, texts: list[str]) -> dict:
    """Cosine between the torch and the ONNX query encoders' vectors of ``texts``."""
    from ingest_platform.query_encoder import get_query_encoder

    model = settings.embedding.model
    torch_enc = get_query_encoder(model, "cpu", "torch")
    onnx_enc = get_query_encoder(model, "cpu", "onnx", str(settings.state / "models"))
    cos = np.array([float(torch_enc._encode(t) @ onnx_enc._encode(t)) for t in texts])
    return {"queries": len(texts), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "cosine_p01": float(np.percentile(cos, 1)), "passes_0_999": bool(cos.min() >= 0.999)}


def compare_configs(settings, texts: list[str], qids: list[str], qrels: dict, k: int, depths: list[int],
                    name: str) -> dict:
    """p50/p95/p99 and nDCG@10 per serving configuration, interleaved per query; see the docstring."""
    from benchmarks.beir import ndcg_at
    from ingest_platform.query import _RESULT_COLUMNS, Retriever, access_filter, keyword_query

    full = settings.query.candidates

    def retriever(encoder: str, memory: bool, vector_depth: int | None = None, mode: str = "hybrid"):
        q = settings.query.model_copy(update={"encoder": encoder, "vector_candidates": vector_depth,
                                              "memory_search_max_rows": 10**9 if memory else 0})
        r = Retriever(settings=settings.model_copy(update={"query": q}), cache_size=0)
        r._encoder(r._pin()).memo_size = 0
        return r, mode

    configs: dict[str, tuple] = {
        f"hybrid, torch, LanceDB vector search @{full}": retriever("torch", False),
        f"hybrid, onnx, LanceDB vector search @{full}": retriever("onnx", False),
    }
    for depth in sorted({full, *depths}, reverse=True):
        configs[f"hybrid, onnx, in-memory vector search @{depth}"] = retriever("onnx", True, depth)
    configs["vector, onnx, in-memory"] = retriever("onnx", True, None, "vector")
    configs["keyword"] = retriever("onnx", True, None, "keyword")
    probe = configs["vector, onnx, in-memory"][0]
    pinned = probe._pin()
    table = pinned.table
    onnx = probe._encoder(pinned)
    where = access_filter(("public",))
    memory = probe._memory(pinned)
    admitted = memory._admitted(where)  # what the function keeps per clause; the bare path reuses it
    matrix, rows = memory.matrix, memory.rows

    # The hits the function fetches before collapsing near-duplicates (``Retriever._search``).
    fetch = min(settings.query.max_k, k * 3 + 10) if settings.guardrails.collapse_near_duplicates else k

    def keyword(text: str, columns: list[str], row_ids: bool = False) -> None:
        try:
            (table.search(keyword_query(text), query_type="fts").where(where, prefilter=True).with_row_id(row_ids)
             .select([*columns, "_score"]).limit(full).to_arrow())
        except ValueError:
            pass

    def bare(text: str, how: str) -> float:
        """What the hybrid function calls, one after the other: encode, vector search, BM25.
        "LanceDB" and "in-memory, every column": both searches return every result column of their
        candidates (what the function did before it fused on ids). "in-memory, ids": as the function
        does now, both return ids and scores, then the columns of ``fetch`` rows are read from memory."""
        t = time.perf_counter()
        vec = onnx._encode(text)
        if how == "LanceDB":
            (table.search(vec, vector_column_name="vector").distance_type("cosine").where(where, prefilter=True)
             .select([*_RESULT_COLUMNS, "_distance"]).limit(full).to_arrow())
            keyword(text, _RESULT_COLUMNS)
        else:
            sims = np.einsum("ij,j->i", matrix, vec)[admitted]  # as _MemoryVectors.search (no BLAS threads)
            n = min(full, len(sims))
            best = np.argpartition(-sims, n - 1)[:n]
            positions = admitted[best[np.argsort(-sims[best])]]
            if how == "in-memory, ids":
                keyword(text, ["chunk_id", "doc_id"], row_ids=True)
                rows.take(positions[:fetch]).to_pylist()
            else:
                rows.take(positions).to_pylist()
                keyword(text, _RESULT_COLUMNS)
        return (time.perf_counter() - t) * 1000

    prefix = f"{name}:"
    for text in texts[:5]:  # warm-up
        for r, mode in configs.values():
            r.search(text, k, mode=mode)
        for how in BARE:
            bare(text, how)
    ms: dict[str, list[float]] = {c: [] for c in configs}
    ndcg: dict[str, list[float]] = {c: [] for c in configs}
    bare_ms: dict[str, list[float]] = {how: [] for how in BARE}
    names = list(configs) + [f"bare:{b}" for b in bare_ms]
    for i, (qid, text) in enumerate(zip(qids, texts)):
        for what in names[i % len(names):] + names[: i % len(names)]:
            if what.startswith("bare:"):
                bare_ms[what[5:]].append(bare(text, what[5:]))
                continue
            r, mode = configs[what]
            t = time.perf_counter()
            result = r.search(text, k, mode=mode)
            ms[what].append((time.perf_counter() - t) * 1000)
            docs = list(dict.fromkeys(h.doc_id.removeprefix(prefix) for h in result.hits))
            ndcg[what].append(ndcg_at(docs, qrels.get(qid, {})))
    out = {"configs": {}, "bare_hybrid_onnx": {}, "vector_depth_of_bare": full}
    for c in configs:
        out["configs"][c] = {**summary(ms[c]), "ndcg@10": statistics.fmean(ndcg[c])}
    for b, values in bare_ms.items():
        out["bare_hybrid_onnx"][b] = summary(values)
    for c, row in out["configs"].items():
        if c.startswith("hybrid, onnx") and c.endswith(f"@{full}"):
            b = "LanceDB" if "LanceDB" in c else "in-memory, ids"  # the calls it makes
            row["overhead_p50_vs_bare"] = row["p50_ms"] / out["bare_hybrid_onnx"][b]["p50_ms"] - 1
    return out


def report_configs(r: dict, agree: dict | None) -> None:
    rows = [[c, v["p50_ms"], v["p95_ms"], v["p99_ms"], v["ndcg@10"], v.get("overhead_p50_vs_bare")]
            for c, v in r["configs"].items()]
    rows += [[f"  bare hybrid calls (onnx encode + {b} vector search + BM25, @{r['vector_depth_of_bare']}, "
              "sequential)", v["p50_ms"], v["p95_ms"], v["p99_ms"], None, None]
             for b, v in r["bare_hybrid_onnx"].items()]
    title = "serving configurations on SciFact: ms per Retriever.search(q, 10) (ACL prefilter, tracing on), " \
            "nDCG@10 of the same calls; overhead = function p50 / bare p50 - 1"
    if agree:
        title += (f"\nONNX vs torch query vectors on {agree['queries']} SciFact queries: cosine min "
                  f"{agree['cosine_min']:.5f}, mean {agree['cosine_mean']:.6f} (bar 0.999: "
                  f"{'met' if agree['passes_0_999'] else 'NOT met'})")
    print_table(["configuration", "p50", "p95", "p99", "nDCG@10", "overhead"], rows, title=title)


def report(name: str, r: dict) -> None:
    rows = []
    for m in MODES:
        s, c = r["single_client"][m], r["concurrent"][m]
        rows.append([f"query function: {m}", s["p50_ms"], s["p95_ms"], s["p99_ms"], s["qps"],
                     c["p50_ms"], c["p95_ms"], c["p99_ms"], c["qps"], r["overhead_p50"][m]])
    for m in MODES:
        s = r["bare_reference"][m]
        c = r["concurrent"]["bare hybrid"] if m == "hybrid" else None
        rows.append([f"bare reference: {m}", s["p50_ms"], s["p95_ms"], s["p99_ms"], s["qps"],
                     *(([c["p50_ms"], c["p95_ms"], c["p99_ms"], c["qps"]]) if c else [None] * 4), None])
    for b, s in r["bare"].items():
        rows.append([f"  bare {b}", s["p50_ms"], s["p95_ms"], s["p99_ms"], s["qps"], None, None, None, None, None])
    for m, v in r["overhead_p50_vs_prefiltered"].items():
        rows.append([f"overhead of {m} over bare calls + ACL prefilter", None, None, None, None, None, None, None,
                     None, v])
    print_table(["", "p50", "p95", "p99", "QPS", "4c p50", "4c p95", "4c p99", "4c QPS", "overhead"], rows,
                title=f"{name}: ms per query (k=10); 1 client, then 4 concurrent clients (4c); "
                      f"reference = embed + bare LanceDB calls at the same depth "
                      f"(hybrid depth {r['depth']['hybrid']})")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.query_latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=SCIFACT, help="BEIR folder: the index's corpus and its queries")
    ap.add_argument("--split", default="test")
    ap.add_argument("--home", type=Path, help="work folder of a built index (default: the BEIR benchmark's)")
    ap.add_argument("--synthetic-chunks", type=int, default=100_000, help="0 skips the synthetic index")
    ap.add_argument("--synthetic-work", type=Path, help="folder of the synthetic index (kept and reused)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--repeat-concurrent", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS / "query_latency.json")
    ap.add_argument("--depths", default="200,100,50", help="hybrid vector candidate depths to compare")
    ap.add_argument("--skip-modes", action="store_true",
                    help="only the configuration comparison (no per-mode / concurrent-client tables)")
    ap.add_argument("--note", default="", help="recorded with the results, e.g. the machine's load")
    args = ap.parse_args(argv)

    from benchmarks.beir import build
    from benchmarks.common import source_name

    dataset = args.dataset.resolve()
    name = source_name(dataset)
    work = (args.home or WORK / f"beir-{name}").resolve()
    queries = load_queries(dataset)
    qids = [q for q in load_qrels(dataset, args.split) if q in queries][: args.queries]
    texts = [queries[q] for q in qids]

    t = time.perf_counter()
    settings, stages, _ = build(dataset, work, name)  # a no-op when the BEIR benchmark built it
    result: dict = {"dataset": name, "queries": len(texts), "k": args.k, "machine": machine(), "indexes": {},
                    "note": args.note, "load_average_at_start": os.getloadavg()}
    all_texts = list(queries.values())
    result["agreement"] = agree = agreement(settings, all_texts)
    qrels = load_qrels(dataset, args.split)
    result["configs"] = compare_configs(settings, texts, qids, qrels, args.k,
                                        [int(d) for d in args.depths.split(",") if d], name)
    report_configs(result["configs"], agree)
    result["load_average_at_end"] = os.getloadavg()
    if args.skip_modes:
        result["wall_s"] = time.perf_counter() - t
        write_json(args.out, result)
        return result
    r = measure(settings, texts, args.k, args.clients, args.repeat_concurrent)
    r["chunks"] = stages["index"]["rows"]
    result["indexes"][name] = r
    report(f"{name} index, {r['chunks']} chunks (brute-force vector search)", r)

    if args.synthetic_chunks:
        syn_settings, built_s = synthetic_index((args.synthetic_work or WORK / f"synthetic-{args.synthetic_chunks}").resolve(),
                                                args.synthetic_chunks,
                                                dataset / "corpus.jsonl")
        r = measure(syn_settings, texts, args.k, args.clients, args.repeat_concurrent)
        r["chunks"] = args.synthetic_chunks
        r["build_s"] = built_s
        from ingest_platform.index import IndexStore

        store = IndexStore(syn_settings.lancedb_uri, syn_settings.index.table)
        r["indexes"] = {ix.name: ix.index_type for ix in store.checkout("production").list_indices()}
        result["indexes"]["synthetic"] = r
        report(f"synthetic index, {args.synthetic_chunks} chunks (random unit vectors; indexes: "
               f"{', '.join(f'{k}={v}' for k, v in r['indexes'].items())})", r)
    result["goals"] = {"hybrid_p50_ms_scifact": result["indexes"][name]["single_client"]["hybrid"]["p50_ms"],
                       "max_overhead_p50": max(v for ix in result["indexes"].values() for v in ix["overhead_p50"].values())}
    result["wall_s"] = time.perf_counter() - t
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
