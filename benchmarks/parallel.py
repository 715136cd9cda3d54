"""Does parallelism on one machine help, and does it change results?

Parsing: the same documents through ``ParserPool`` with 1 and with N worker processes (pools warmed
first, so start-up is not timed); the element tables must be identical. Embedding: the same texts
encoded with 1 and with N torch intra-op threads; the vectors must agree to float tolerance.

Shards: with ``--dagster-files DIR`` (e.g. SciFact rendered as PDFs by ``benchmarks.render``), the
``parsed_documents`` asset materialized by Dagster's multiprocess executor from an empty state, one
shard per step, with ``max_concurrent`` 1 and then N (one parser worker per step): the documents/s
of each, start-up included, as a scheduled run pays it; the parse caches must hold the same
elements.

    python -m benchmarks.parallel [--docs DIR ...] [--workers 2] [--dagster-files DIR [--dagster-docs N]]
                                  [--out benchmarks/results/parallel.json]
"""

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
SHARED = ROOT.parent / "shared" / "datasets"


def _files(dirs: list[Path]) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*") if p.is_file() and not p.name.endswith(".meta.json"))


def parse_round(files: list[Path], workers: int, repeat: int) -> tuple[float, dict]:
    from ingest_platform.config import ParsingSettings
    from ingest_platform.parsing import ParserPool

    settings = ParsingSettings(workers=workers)
    jobs = [(str(p), p.read_bytes(), p.name, None) for p in files]
    with ParserPool(settings) as pool:
        list(pool.parse_many(jobs[: workers * 2]))  # warm every worker
        started = time.perf_counter()
        for _ in range(repeat):
            results = dict(pool.parse_many(jobs))
        seconds = (time.perf_counter() - started) / repeat
    return seconds, {k: (v.to_pylist() if hasattr(v, "to_pylist") else str(v)) for k, v in results.items()}


def parse_job():
    """``parsed_documents`` alone on the multiprocess executor (module level: steps in other
    processes rebuild it by name). Settings come from ``INGEST_PLATFORM_CONFIG``."""
    import dagster as dg

    import definitions
    from resources import build_resources

    job = dg.define_asset_job("parse_shards", selection=dg.AssetSelection.assets(definitions.parsed_documents),
                              executor_def=dg.multiprocess_executor)
    return dg.Definitions(assets=definitions.ASSETS, jobs=[job], resources=build_resources(os.environ.get(
        "INGEST_PLATFORM_CONFIG"))).resolve_job_def("parse_shards")


def dagster_parse_round(folder: Path, work: Path, processes: int, docs: int | None) -> dict:
    """A fresh home over ``folder`` (its first ``docs`` files), scanned, then ``parsed_documents``
    run by Dagster with ``max_concurrent = processes``; wall time of the run and the elements."""
    import shutil

    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob

    from ingest_platform import pipeline
    from ingest_platform.config import load_settings

    home = work / f"dagster-{processes}"
    if home.exists():
        shutil.rmtree(home)
    src = work / "files"
    if not src.exists():
        src.mkdir(parents=True)
        for p in sorted(folder.iterdir())[:docs]:  # copies: the source does not follow symlinks out
            try:
                os.link(p, src / p.name)
            except OSError:
                shutil.copy2(p, src / p.name)
    cfg = work / f"config-{processes}.toml"
    cfg.write_text(f'home = "{home.as_posix()}"\n[parsing]\nworkers = 1\n'
                   f'[[sources]]\nname = "files"\npath = "{src.as_posix()}"\naccess_groups = ["public"]\n')
    os.environ["INGEST_PLATFORM_CONFIG"] = str(cfg)
    # The step processes import the project's top-level modules (definitions, assets, resources).
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    settings = load_settings(cfg)
    pipeline.scan(settings)
    (work / f"instance-{processes}").mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(str(work / f"instance-{processes}"))
    recon = ReconstructableJob.for_file(str(Path(__file__).resolve()), "parse_job")
    started = time.perf_counter()
    result = dg.execute_job(recon, instance=instance, run_config={
        "execution": {"config": {"max_concurrent": processes}}})
    seconds = time.perf_counter() - started
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    parsed = pipeline.parsed_store(settings).read(pipeline.parsed_store(settings).keys())
    files = len(list(src.iterdir()))
    assert len(set(parsed["content_sha256"].to_pylist())) == files, "not every file was parsed"
    elements = sorted(zip(parsed["content_sha256"].to_pylist(), parsed["element_index"].to_pylist(),
                          parsed["text"].to_pylist()))
    return {"seconds": seconds, "documents": files, "elements": elements}


def embed_round(texts: list[str], threads: int):
    import torch

    from ingest_platform.embedding import get_embedder

    torch.set_num_threads(threads)
    embedder = get_embedder()
    embedder.encode(texts[:64])
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    return time.perf_counter() - started, vectors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", nargs="*", type=Path,
                    default=[ROOT / "data" / "sample", SHARED / "example-docs"])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--texts", type=int, default=600)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "parallel.json")
    ap.add_argument("--dagster-files", type=Path, help="a folder of files for the shard measurement")
    ap.add_argument("--dagster-docs", type=int, default=1000, help="use its first N files (default 1000)")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "parallel")
    args = ap.parse_args()
    if args.dagster_files:
        return shard_main(args)
    files = _files([d for d in args.docs if d.exists()])

    one_s, one = parse_round(files, 1, args.repeat)
    many_s, many = parse_round(files, args.workers, args.repeat)
    same_parse = one == many

    corpus = SHARED / "scifact" / "corpus.jsonl"
    if corpus.exists():
        with open(corpus) as fh:
            texts = [json.loads(line)["text"] for _, line in zip(range(args.texts), fh)]
    else:
        texts = [p.read_text(errors="ignore")[:1500] for p in files if p.suffix in {".md", ".txt"}] * 20
    import numpy as np
    import torch

    default_threads = torch.get_num_threads()
    e1, v1 = embed_round(texts, 1)
    en, vn = embed_round(texts, args.workers)
    torch.set_num_threads(default_threads)
    max_diff = float(np.abs(v1 - vn).max())

    result = {
        "cpu_count": os.cpu_count(), "workers": args.workers, "documents": len(files),
        "parse": {"seconds_1_worker": one_s, f"seconds_{args.workers}_workers": many_s,
                  "docs_per_s_1": len(files) / one_s, f"docs_per_s_{args.workers}": len(files) / many_s,
                  "speedup": one_s / many_s, "identical_results": same_parse},
        "embed": {"texts": len(texts), "seconds_1_thread": e1, f"seconds_{args.workers}_threads": en,
                  "speedup": e1 / en, "max_abs_vector_difference": max_diff},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"| stage | 1 | {args.workers} | speedup | same results |\n|---|---|---|---|---|")
    print(f"| parse ({len(files)} docs) | {len(files)/one_s:.2f} docs/s | {len(files)/many_s:.2f} docs/s | "
          f"{one_s/many_s:.2f}x | {same_parse} |")
    print(f"| embed ({len(texts)} texts) | {len(texts)/e1:.1f} texts/s | {len(texts)/en:.1f} texts/s | "
          f"{e1/en:.2f}x | max diff {max_diff:.1e} |")
    print(f"wrote {args.out}")
    return 0 if same_parse and max_diff < 1e-4 else 1


def shard_main(args) -> int:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    one = dagster_parse_round(args.dagster_files.resolve(), work, 1, args.dagster_docs)
    many = dagster_parse_round(args.dagster_files.resolve(), work, args.workers, args.dagster_docs)
    same = one.pop("elements") == many.pop("elements")
    n = one["documents"]
    result = {"cpu_count": os.cpu_count(), "documents": n, "files": f"{args.dagster_files.name}/, its first {n} files",
              "dagster_multiprocess_parse": {
                  "seconds_1_process": one["seconds"], f"seconds_{args.workers}_processes": many["seconds"],
                  "docs_per_s_1": n / one["seconds"], f"docs_per_s_{args.workers}": n / many["seconds"],
                  "speedup": one["seconds"] / many["seconds"], "identical_results": same}}
    out = args.out if args.out.name != "parallel.json" else args.out.with_name("parallel-shards.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **result}, indent=2))
    print(f"| parsed_documents, Dagster multiprocess executor ({n} files) | 1 process | {args.workers} processes | "
          f"speedup | same elements |\n|---|---|---|---|---|")
    print(f"| docs/s (run start-up included) | {n / one['seconds']:.1f} | {n / many['seconds']:.1f} | "
          f"{one['seconds'] / many['seconds']:.2f}x | {same} |")
    print(f"wrote {out}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
