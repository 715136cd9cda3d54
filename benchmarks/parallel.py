"""Does parallelism on one machine help, and does it change results?

Parsing: the same documents through ``ParserPool`` with 1 and with N worker processes (pools warmed
first, so start-up is not timed); the element tables must be identical. Embedding: the same texts
encoded with 1 and with N torch intra-op threads; the vectors must agree to float tolerance.

    python -m benchmarks.parallel [--docs DIR ...] [--workers 2] [--out benchmarks/results/parallel.json]
"""

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
