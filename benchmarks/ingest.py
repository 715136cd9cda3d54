"""Ingest throughput and memory of the real pipeline.

    python -m benchmarks.ingest [DATASET_DIR] [--docs N] [--memory-docs N] [--scale 10] [--out FILE.json]

1. Throughput: a build of DATASET_DIR's ``corpus.jsonl`` (default SciFact; ``--docs N`` for its first
   N documents) from an empty state, stage by stage exactly as ``pipeline.run_all`` runs them:
   documents/s, chunks/s, wall and CPU seconds, peak resident memory per stage. In the same process,
   after the build, the efficiency of the platform's embedding path: the embed stage and the bare
   encoder (separately loaded) over the same texts, interleaved shard by shard
   (``embed_interleaved``); the bare encoder's time over the stage's is the ratio (goal >= 0.95).
2. Memory flatness: the peak RSS of a build of a synthetic corpus ``--scale`` times the dataset's
   size, made by recombining its documents' sentences (10x), over that of the throughput build
   (1x; goal <= 1.2). ``--memory-docs N`` makes the 1x build the first N documents instead (a
   quicker, smaller comparison).

Each build runs in its own subprocess so ``ru_maxrss`` is that build's own peak. ``--in-process``
runs them in this process instead (for the smoke test; peaks are then sampled RSS, less exact).
"""

from __future__ import annotations

import os
import argparse
import json
import math
import random
import statistics
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (RESULTS, SCIFACT, WORK, RssSampler, machine, make_settings, peak_rss_mb,
                               print_table, read_jsonl, write_json)

STAGES = ("scan", "parse", "chunk", "enrich", "embed", "index")  # the timed ones of ingest_platform.stages
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


# ---- corpora ------------------------------------------------------------------------------------


def write_slice(src: Path, dst: Path, docs: int | None) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as out:
        for i, rec in enumerate(read_jsonl(src)):
            if docs is not None and i >= docs:
                break
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return dst


def write_synthetic(src: Path, dst: Path, docs: int, seed: int = 13) -> Path:
    """``docs`` documents made of sentences drawn at random from ``src``'s documents: each copies
    the sentence count of a random real document (so lengths follow the real distribution) and takes
    a real title with one word swapped out, so no text (hence no embedding) repeats by accident."""
    rng = random.Random(seed)
    recs = list(read_jsonl(src))
    sentences = [s for r in recs for s in _SENT.split(r.get("text") or "") if s.strip()]
    counts = [max(1, len(_SENT.split(r.get("text") or ""))) for r in recs]
    titles = [r.get("title") or "" for r in recs]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as out:
        for i in range(docs):
            text = " ".join(rng.choice(sentences) for _ in range(rng.choice(counts)))
            words = rng.choice(titles).split() or ["Untitled"]
            words[rng.randrange(len(words))] = rng.choice(rng.choice(sentences).split() or ["x"])
            out.write(json.dumps({"_id": f"syn-{i}", "title": " ".join(words), "text": text,
                                  "metadata": {}}, ensure_ascii=False) + "\n")
    return dst


# ---- one build (runs in a child process by default) --------------------------------------------


class StandInEncoder:
    """The loaded model's id and dimension, with vectors made from each text's hash instead of the
    model's forward pass (unit length, the same text always the same vector).

    Why: the 10x memory build spends an hour in the encoder, whose own memory does not grow with
    the corpus (the embed stage's peak is below the gates' with the default model). With this
    encoder (``--stand-in-encoder``) both memory builds take 7 to 15 minutes, so a change to the
    pipeline's memory can be measured in a session; the reported results say which encoder ran."""

    def __init__(self, embedder):
        self.model_id, self.dim, self.spec, self.batch_size = embedder.model_id, embedder.dim, embedder.spec, 64

    def encode(self, texts: list[str], progress=None, chunk: int = 256):
        import hashlib

        import numpy as np

        out = np.empty((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        if progress:
            progress(len(texts))
        return out


def build(corpus: Path, home: Path, bare: bool, stand_in: bool = False) -> dict:
    """Every stage of ``run_all`` from an empty state, instrumented; optionally the bare encode.
    ``stand_in``: vectors from ``StandInEncoder`` instead of the model's forward pass."""
    import shutil

    from ingest_platform import pipeline, promotion
    from ingest_platform.embedding import get_embedder

    if home.exists():
        shutil.rmtree(home)
    settings = make_settings(home, corpus, "corpus")
    e = settings.embedding
    out: dict = {"corpus": os.path.relpath(corpus), "stages": {}}
    t_all = time.perf_counter()
    with RssSampler() as total:
        t, c = time.perf_counter(), time.process_time()
        # What the embed stage does first (get_embedder is cached per process); timed on its own so
        # the embed stage's rate can be compared with and without it.
        embedder = get_embedder(e.model, e.device, e.batch_size)
        if stand_in:
            embedder = StandInEncoder(embedder)
        out["model_load"] = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
        from ingest_platform.stages import STAGES as ALL_STAGES

        steps = {stage.name: stage for stage in ALL_STAGES}  # in the pipeline's own order
        for name in STAGES:
            with RssSampler() as stage_rss:
                t, c = time.perf_counter(), time.process_time()
                result = steps[name].run(settings, embedder)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
            out["stages"][name] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": stage_rss.peak,
                                   "summary": _summary(result)}
        # The gates, as a run judges the candidate (their memory counts: they read every chunk and
        # vector of the version), then the one promotion door.
        with RssSampler() as stage_rss:
            t = time.perf_counter()
            verdicts = promotion.judge(settings, pipeline.index_store(settings).tags()["candidate"])
            promotion.promote(settings, why="benchmark")
        out["stages"]["gates"] = {"wall_s": time.perf_counter() - t, "peak_rss_mb": stage_rss.peak,
                                  "verdicts": verdicts}
    out["build_wall_s"] = time.perf_counter() - t_all
    out["peak_rss_sampled_mb"] = total.peak
    out["peak_rss_mb"] = peak_rss_mb()
    counts = out["stages"]["scan"]["summary"].get("counts", {})
    out["documents"] = sum(v for k, v in counts.items() if k != "deleted")
    out["chunks"] = out["stages"]["chunk"]["summary"]["rows"]
    if bare:  # after the build, so its peak memory is the build's own
        out["embedding_efficiency"] = embed_interleaved(settings, embedder)
    return out


def _summary(result) -> dict:
    from dataclasses import asdict, is_dataclass

    return {k: v for k, v in (asdict(result) if is_dataclass(result) else dict(result)).items()
            if isinstance(v, (int, float, str, bool, dict)) and k != "failures"}


def bare_encoder(settings):
    """The floor the embed stage is held to, separately loaded and warmed up: for a model that
    ships as ONNX the bare ONNX Runtime encoder (``onnx_encoder``, which the stage runs too), else
    ``SentenceTransformer.encode`` with the stage's batch size. Returns a function of a text list."""
    from ingest_platform import onnx_encoder
    from ingest_platform.models import onnx_weights, resolve_model_path

    e = settings.embedding
    if onnx_weights(e.model) is not None:
        encoder = onnx_encoder.for_model(e.model)
        encode = encoder.embed
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(resolve_model_path(e.model), device=e.device)

        def encode(texts: list[str]):
            return model.encode(texts, batch_size=e.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
    encode(["warm-up"] * 8)  # as the stage's model was warmed up by the build
    return encode


class _TimedEmbedder:
    """The stage's embedder, with the seconds spent inside its ``encode`` counted: what the stage
    spends outside it is the platform's own path (reading the shard, the cache lookups and saves,
    the revocation checks, progress), measured at the same moments as the rest, so the machine's
    drift cannot enter it."""

    def __init__(self, embedder):
        self._embedder, self.seconds = embedder, 0.0

    def __getattr__(self, name):
        return getattr(self._embedder, name)

    def encode(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self._embedder.encode(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


def embed_interleaved(settings, embedder) -> dict:
    """The embed stage against the bare encoder, shard by shard, on a built state.

    Why interleaved: run one after the other, each over the whole corpus, the two timings fell in
    different phases of this shared machine (the bare encoder alone took 183 s in one run and 293 s
    in the next over the same texts), so their ratio measured the machine's drift as much as the
    platform. Here the embedding cache is emptied, then for each shard the embed stage runs on that
    shard alone (``pipeline.embed(..., shards=[shard])``: reading the shard, the cache lookups, the
    revocation check, the saves) and the bare encoder on exactly the texts that call embedded, the
    one right after the other, the order alternating from shard to shard so neither side always
    runs second. Each pair sees the same phase of the machine; the ratio is of the sums. On this
    machine the speed still moves within a pair (a shard's ratio ranged from 0.62 to 1.57), so the
    stage's time inside its encoder's ``encode`` is also counted (``_TimedEmbedder``): its share of
    the stage's time is the ratio the stage would have if the encoder inside it ran exactly as fast
    as the bare one, with no drift at all (``ratio_in_stage``)."""
    import shutil

    from ingest_platform import pipeline
    from ingest_platform.embedding import EmbeddingCache

    cache = EmbeddingCache(settings.state, embedder.model_id, embedder.dim)
    shutil.rmtree(cache.store.folder)
    cache = EmbeddingCache(settings.state, embedder.model_id, embedder.dim)
    bare = bare_encoder(settings)
    table = pipeline.indexable_table(settings)
    pairs = []
    for i, shard in enumerate(table.written()):
        t = table.read(shard, ["text", "text_sha256"])
        known = cache.keys()
        todo: dict[str, str] = {}
        for h, text in zip(t.column("text_sha256").to_pylist(), t.column("text").to_pylist()):
            if h not in known:
                todo.setdefault(h, text)
        texts = list(todo.values())
        row = {"shard": shard, "texts": len(texts), "stage_first": i % 2 == 0}
        timed = _TimedEmbedder(embedder)
        sides = [("stage", lambda: pipeline.embed(settings, timed, shards=[shard])), ("bare", lambda: bare(texts))]
        for side, call in (sides if row["stage_first"] else sides[::-1]):
            w, c = time.perf_counter(), time.process_time()
            result = call()
            row[f"{side}_wall_s"], row[f"{side}_cpu_s"] = time.perf_counter() - w, time.process_time() - c
            if side == "stage" and result.embedded != len(texts):
                raise RuntimeError(f"shard {shard}: the stage embedded {result.embedded} texts, expected {len(texts)}")
        row["stage_encode_s"] = timed.seconds
        pairs.append(row)
    tot = {k: sum(p[k] for p in pairs)
           for k in ("texts", "stage_wall_s", "stage_cpu_s", "stage_encode_s", "bare_wall_s", "bare_cpu_s")}
    logs = [math.log(p["bare_wall_s"] / p["stage_wall_s"]) for p in pairs if p["texts"]]
    mean, se = statistics.fmean(logs), statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    ratios = sorted(p["bare_wall_s"] / p["stage_wall_s"] for p in pairs if p["texts"])

    def of(first: bool) -> float:
        sel = [p for p in pairs if p["stage_first"] == first and p["texts"]]
        return sum(p["bare_wall_s"] for p in sel) / sum(p["stage_wall_s"] for p in sel)

    return {
        **tot, "shards": len(pairs),
        "stage_chunks_per_s": tot["texts"] / tot["stage_wall_s"], "bare_chunks_per_s": tot["texts"] / tot["bare_wall_s"],
        "ratio": tot["bare_wall_s"] / tot["stage_wall_s"], "ratio_cpu_time": tot["bare_cpu_s"] / tot["stage_cpu_s"],
        "ratio_per_shard": {"min": ratios[0], "median": ratios[len(ratios) // 2], "max": ratios[-1],
                            "geometric_mean": math.exp(mean),
                            "geometric_mean_95ci": [math.exp(mean - 1.96 * se), math.exp(mean + 1.96 * se)]},
        "ratio_in_stage": tot["stage_encode_s"] / tot["stage_wall_s"],
        "ratio_stage_first": of(True), "ratio_bare_first": of(False), "pairs": pairs,
    }


SHARDS_ENV = "INGEST_PLATFORM_SCALE__SHARDS"


def run_build(corpus: Path, home: Path, bare: bool, in_process: bool, shards: int | None = None,
              stand_in: bool = False) -> dict:
    """One build; ``shards`` sets ``[scale] shards`` for it (and for later runs on its state, which
    read the same environment)."""
    if shards is not None:
        os.environ[SHARDS_ENV] = str(shards)
    else:
        os.environ.pop(SHARDS_ENV, None)
    if in_process:
        return build(corpus, home, bare, stand_in)
    result = home.parent / f"{home.name}.result.json"
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--child", str(corpus), str(home), str(result)]
    if bare:
        cmd.append("--bare")
    if stand_in:
        cmd.append("--stand-in-encoder")
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(result.read_text())


# ---- report -------------------------------------------------------------------------------------


def stage_rows(b: dict) -> list[list]:
    rows = []
    for name in STAGES:
        s = b["stages"][name]
        docs = s["summary"].get("documents", s["summary"].get("parsed"))
        chunks = {"chunk": s["summary"].get("rows"), "enrich": s["summary"].get("rows"),
                  "embed": s["summary"].get("embedded"), "index": s["summary"].get("inserted")}.get(name)
        if name == "scan":
            docs = b["documents"]
        rows.append([name, s["wall_s"], s["cpu_s"], docs, docs / s["wall_s"] if docs else None,
                     chunks, chunks / s["wall_s"] if chunks else None, s["peak_rss_mb"]])
    return rows


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        corpus, home, result = Path(argv[1]), Path(argv[2]), Path(argv[3])
        result.write_text(json.dumps(build(corpus, home, "--bare" in argv, "--stand-in-encoder" in argv), default=str))
        return {}
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT, help="a BEIR folder (default: SciFact)")
    ap.add_argument("--docs", type=int, help="throughput build on the first N documents only")
    ap.add_argument("--memory-docs", type=int, help="1x memory build on the first N documents (default: the throughput build)")
    ap.add_argument("--scale", type=int, default=10, help="size of the synthetic build, in 1x builds (default 10)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-incremental", action="store_true",
                    help="skip the no-op and 1%%-changed runs on the big build")
    ap.add_argument("--stand-in-encoder", action="store_true",
                    help="memory builds only: vectors from text hashes instead of the model (StandInEncoder)")
    ap.add_argument("--in-process", action="store_true", help="no subprocesses (smoke tests)")
    ap.add_argument("--work", type=Path, default=WORK / "ingest")
    ap.add_argument("--out", type=Path, default=RESULTS / "ingest.json")
    args = ap.parse_args(argv)

    src = args.dataset.resolve() / "corpus.jsonl"
    work = args.work.resolve()
    result: dict = {"dataset": os.path.relpath(args.dataset), "machine": machine()}

    if not args.skip_throughput:
        corpus = src if args.docs is None else write_slice(src, work / "corpora" / f"first-{args.docs}.jsonl", args.docs)
        b = run_build(corpus, work / "throughput", bare=True, in_process=args.in_process)
        result["throughput"] = b
        print_table(["stage", "wall s", "cpu s", "docs", "docs/s", "chunks", "chunks/s", "peak RSS MB"],
                    stage_rows(b), title=f"Build of {b['documents']} documents, {b['chunks']} chunks: "
                    f"{b['build_wall_s']:.1f}s, peak RSS {b['peak_rss_mb']:.0f} MB (model load "
                    f"{b['model_load']['wall_s']:.1f}s)")
        ee = b["embedding_efficiency"]
        per = ee["ratio_per_shard"]
        print_table(["embedding, shard by shard, alternating", "chunks", "wall s", "chunks/s", "ratio to bare"], [
            ["embed stage (model loaded)", ee["texts"], ee["stage_wall_s"], ee["stage_chunks_per_s"], ee["ratio"]],
            ["bare encoder (ONNX Runtime for an ONNX model, else SentenceTransformer.encode)", ee["texts"],
             ee["bare_wall_s"], ee["bare_chunks_per_s"], 1.0],
            ["ratio of CPU seconds per chunk (bare / stage)", None, None, None, ee["ratio_cpu_time"]],
            [f"per-shard ratio, min / median / max of {ee['shards']}: {per['min']:.3f} / {per['median']:.3f} / "
             f"{per['max']:.3f}; geometric mean {per['geometric_mean']:.3f} (95% CI {per['geometric_mean_95ci'][0]:.3f}"
             f"-{per['geometric_mean_95ci'][1]:.3f})", None, None, None, None],
            ["shards where the stage ran first / second", None, None, None,
             f"{ee['ratio_stage_first']:.3f} / {ee['ratio_bare_first']:.3f}"],
            ["stage's seconds inside its encoder / all its seconds (no drift between them)", None,
             ee["stage_encode_s"], None, ee["ratio_in_stage"]],
        ], title="Embed stage vs bare encoder, same texts, same process, interleaved per shard (goal >= 0.95)")

    if not args.skip_memory:
        if args.memory_docs is None:
            base = src if args.docs is None else work / "corpora" / f"first-{args.docs}.jsonl"
            # The throughput build ran the model: a stand-in comparison builds its own 1x.
            reuse = None if args.stand_in_encoder else result.get("throughput")
            one = reuse or run_build(base, work / "throughput", bare=False, in_process=args.in_process,
                                     stand_in=args.stand_in_encoder)
        else:
            base = write_slice(src, work / "corpora" / f"first-{args.memory_docs}.jsonl", args.memory_docs)
            one = run_build(base, work / "memory-1x", bare=False, in_process=args.in_process,
                            stand_in=args.stand_in_encoder)
        big = write_synthetic(base, work / "corpora" / f"synthetic-{args.scale}x-{one['documents']}.jsonl",
                              args.scale * one["documents"])
        # Shards scale with the corpus (``ingest_platform.shards``): ten times the documents in ten
        # times the buckets, so a shard, and what a stage holds of it, stays the same size.
        from ingest_platform.config import ScaleSettings

        shards = ScaleSettings().shards * args.scale
        many = run_build(big, work / f"memory-{args.scale}x", bare=False, in_process=args.in_process, shards=shards,
                         stand_in=args.stand_in_encoder)
        key = "peak_rss_sampled_mb" if args.in_process else "peak_rss_mb"
        result["memory"] = {
            "what": f"peak RSS of a build of {one['documents']} documents of {result['dataset']} vs a synthetic "
                    f"corpus {args.scale}x its size made of its sentences, each in {'this' if args.in_process else 'a fresh'} process",
            "in_process": args.in_process,
            "encoder": "stand-in: vectors from text hashes (StandInEncoder)" if args.stand_in_encoder else "the model",
            "shards": {"1x": ScaleSettings().shards, f"{args.scale}x": shards},
            "1x": {k: one[k] for k in ("documents", "chunks", "build_wall_s", "peak_rss_mb", "peak_rss_sampled_mb")},
            f"{args.scale}x": {k: many[k] for k in ("documents", "chunks", "build_wall_s", "peak_rss_mb", "peak_rss_sampled_mb")},
            "stage_peaks_mb": {"1x": {s: one["stages"][s]["peak_rss_mb"] for s in (*STAGES, "gates")},
                               f"{args.scale}x": {s: many["stages"][s]["peak_rss_mb"] for s in (*STAGES, "gates")}},
            "ratio": many[key] / one[key],
        }
        print_table(["build", "documents", "chunks", "wall s", "peak RSS MB"], [
            ["1x", one["documents"], one["chunks"], one["build_wall_s"], one[key]],
            [f"{args.scale}x synthetic", many["documents"], many["chunks"], many["build_wall_s"], many[key]],
            [f"ratio (goal <= 1.2)", None, None, None, result["memory"]["ratio"]],
        ], title="Memory flatness")
        print_table(["stage", "1x peak MB", f"{args.scale}x peak MB"],
                    [[s, one["stages"][s]["peak_rss_mb"], many["stages"][s]["peak_rss_mb"]] for s in (*STAGES, "gates")])
        if not args.skip_incremental:
            result["incremental_at_scale"] = incremental_runs(big, work / f"memory-{args.scale}x", many, args)

    write_json(args.out, result)
    return result


def incremental_runs(corpus: Path, home: Path, full: dict, args) -> dict:
    """On the big build's state: a no-op run and a run with 1% of the documents changed, each a
    fresh process as a scheduled run would be (``benchmarks.incremental``), as fractions of the big
    build's wall time (goals: no-op <= 1%, 1% changed <= 2%)."""
    from benchmarks import incremental

    noop = incremental.run(corpus, home, "noop-at-scale", args.in_process)
    changed = incremental.change_documents(corpus, 0.01)
    partial = incremental.run(corpus, home, "one-percent-at-scale", args.in_process)
    out = {"documents": full["documents"], "full_build_s": full["build_wall_s"], "changed_documents": len(changed)}
    for label, r in (("no-op", noop), ("1% changed", partial)):
        out[label] = {"run_all_s": r["run_all_s"], "process_s": r["process_s"],
                      "fraction_of_full": r["process_s"] / full["build_wall_s"],
                      "embedded": r["stages"]["embed"]["embedded"],
                      "stages_s": {k: v["wall_s"] for k, v in r["stages"].items()}}
    print_table(["run", "process s", "fraction of the full build", "chunks embedded"],
                [[k, out[k]["process_s"], out[k]["fraction_of_full"], out[k]["embedded"]] for k in ("no-op", "1% changed")],
                title=f"Incremental runs on the {full['documents']}-document build "
                      f"({full['build_wall_s']:.0f}s; goals: no-op <= 1%, 1% changed <= 2%)")
    steps = list(dict.fromkeys(k for label in ("no-op", "1% changed") for k in out[label]["stages_s"]))
    print_table(["run", *steps], [[label, *(out[label]["stages_s"].get(k) for k in steps)]
                                  for label in ("no-op", "1% changed")], title="Seconds per stage")
    return out


if __name__ == "__main__":
    main()
