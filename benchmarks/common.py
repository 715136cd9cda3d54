"""Helpers shared by the benchmarks: locations, settings for a BEIR corpus, slicing, tables, memory."""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("DO_NOT_TRACK", "true"),
                     ("UNSTRUCTURED_DISABLE_NOTICE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "datasets"
SCIFACT = SHARED / "scifact"


# ---- BEIR files ---------------------------------------------------------------------------------


def read_jsonl(path: Path):
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def revise_one(records: list[dict], i: int) -> None:
    """Change the i-th run's document (a different one each run, spread over the corpus)."""
    r = records[(i * 7919) % len(records)]
    r["text"] = f"Update {i}: the record was revised. " + (r.get("text") or "")


def load_queries(dataset: Path) -> dict[str, str]:
    return {str(q["_id"]): q["text"] for q in read_jsonl(Path(dataset) / "queries.jsonl")}


def load_qrels(dataset: Path, split: str) -> dict[str, dict[str, int]]:
    """query id -> {corpus id: relevance}; the header line (if any) is skipped."""
    path = Path(dataset) / "qrels" / f"{split}.tsv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (splits here: "
                                f"{', '.join(sorted(p.stem for p in path.parent.glob('*.tsv')))})")
    out: dict[str, dict[str, int]] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.strip().split("\t")
        if len(parts) < 3:
            continue
        try:
            rel = int(float(parts[2]))
        except ValueError:
            if i == 0:
                continue  # header: query-id corpus-id score
            raise
        out.setdefault(parts[0], {})[parts[1]] = rel
    return out


def source_name(dataset: Path) -> str:
    """A valid source name derived from the dataset folder's name."""
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in Path(dataset).resolve().name)
    return name or "corpus"


def slice_beir(src: Path, dst: Path, *, docs: int, queries: int, split: str = "test", seed: int = 0) -> Path:
    """A small BEIR folder: ``queries`` judged queries of ``split``, all their relevant documents,
    and other documents (in corpus order) up to ``docs``. Written under ``dst`` (a work folder)."""
    qrels = load_qrels(src, split)
    texts = load_queries(src)
    qids = sorted((q for q in qrels if q in texts), key=lambda q: (len(q), q))
    random.Random(seed).shuffle(qids)
    chosen = qids[:queries]
    wanted = {d for q in chosen for d in qrels[q]}
    fill = max(0, docs - len(wanted))
    out_docs = []
    for rec in read_jsonl(Path(src) / "corpus.jsonl"):
        if str(rec["_id"]) in wanted:
            out_docs.append(rec)
        elif fill > 0:
            out_docs.append(rec)
            fill -= 1
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    with open(dst / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for rec in out_docs:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with open(dst / "queries.jsonl", "w", encoding="utf-8") as fh:
        for q in chosen:
            fh.write(json.dumps({"_id": q, "text": texts[q]}, ensure_ascii=False) + "\n")
    with open(dst / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in chosen:
            for d, r in qrels[q].items():
                fh.write(f"{q}\t{d}\t{r}\n")
    return dst


# ---- settings -----------------------------------------------------------------------------------


def make_settings(home: Path, corpus: Path, name: str = "corpus", **overrides: Any):
    """Platform settings for one record source, from the platform's defaults only: an empty config
    file is passed so a ``ingest-platform.toml`` in the working directory does not leak in."""
    from ingest_platform.config import load_settings

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    empty = home / "benchmark-empty.toml"
    if not empty.exists():
        empty.write_text("# benchmarks use the platform defaults\n")
    sources = [{"name": name, "path": str(Path(corpus).resolve()), "access_groups": ["public"]}]
    return load_settings(empty, home=str(home / "state"), sources=sources, **overrides)


def indexed_documents(settings) -> int:
    """Documents with chunks in the build (counted from its chunks, so a run that redid nothing
    counts them too)."""
    from ingest_platform.pipeline import chunk_table

    return len(set(chunk_table(settings).read_all(["doc_id"])["doc_id"].to_pylist()))


# ---- memory -------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


class RssSampler:
    """Samples this process's RSS in a thread; ``peak`` is the largest seen between start and stop."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# ---- output -------------------------------------------------------------------------------------


def machine() -> dict:
    import importlib.metadata as md

    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for pkg in ("torch", "sentence-transformers", "lancedb", "onnxruntime"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return info


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "-" if value is None else str(value)


def print_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    sys.stdout.flush()


def write_json(path: Path | str, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    print(f"\nwrote {path}")
    return path
