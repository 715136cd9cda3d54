"""The naive baseline: whole documents, one vector each, LanceDB BM25, plain RRF (k=60).

    python -m benchmarks.naive [DATASET_DIR] [--split test] [--model NAME] [--out FILE.json]

What a 40-line script does with the same model and database, and what the platform must beat:
each document's whole text (read naively from its file: pdfminer's text of a PDF, python-docx's
paragraphs, the HTML's text) is embedded once by all-MiniLM-L6-v2 (which reads its first 256
word pieces; ``model`` names another) and indexed in LanceDB with a full-text index; a query's
vector and BM25 top lists (``DEPTH`` documents each) are fused by reciprocal rank fusion with
k = 60 and equal weights.

Used by ``benchmarks.fusion_cv`` (SciFact as records) and ``benchmarks.fidelity`` (SciFact
rendered as files), as the issue that asked for it defined it (all-MiniLM-L6-v2). Run alone, it
scores a BEIR folder's records with any bundled model: with the platform's default model it says
what the platform's chunking and fusion add over a script that has the same model.
Vectors are cached under the work folder, keyed by model and texts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

DEPTH = 100
RRF_K = 60


def document_text(path: Path) -> str:
    """A file's whole text, read the simplest way a script would."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pdfminer.high_level import extract_text

        return extract_text(str(path))
    if suffix == ".docx":
        import docx

        return "\n".join(p.text for p in docx.Document(str(path)).paragraphs)
    if suffix in (".html", ".htm"):
        import lxml.html

        return lxml.html.fromstring(path.read_bytes()).text_content()
    return path.read_text(errors="replace")


def record_text(record: dict) -> str:
    """A BEIR record's whole text: its title, a blank line, its body."""
    return f"{record.get('title') or ''}\n\n{record.get('text') or ''}"


class NaiveIndex:
    """Whole-document vectors and BM25 in one LanceDB table."""

    def __init__(self, ids: list[str], texts: list[str], work: Path, model: str = "all-MiniLM-L6-v2"):
        import lancedb
        import pyarrow as pa

        from ingest_platform.embedding import get_embedder

        self.embedder = get_embedder(model)
        vectors = self._vectors(texts, work)
        db = lancedb.connect(str(work / "naive-lancedb"))
        db.drop_table("docs", ignore_missing=True)
        flat = pa.array(vectors.ravel(), pa.float32())
        self.table = db.create_table("docs", pa.table({
            "doc_id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}))
        self.table.create_fts_index("text", replace=True)  # LanceDB's defaults, as a script would

    def _vectors(self, texts: list[str], work: Path) -> np.ndarray:
        key = hashlib.sha256("\x00".join([self.embedder.model_id, *texts]).encode()).hexdigest()[:16]
        path = work / f"naive-vectors-{key}.npy"
        if path.exists():
            return np.load(path)
        vectors = self.embedder.encode(texts).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
        return vectors

    def vector(self, query: str) -> list[str]:
        vec = self.embedder.encode_query(query)
        rows = self.table.search(vec).distance_type("cosine").select(["doc_id", "_distance"]).limit(DEPTH).to_arrow()
        return rows["doc_id"].to_pylist()

    def keyword(self, query: str) -> list[str]:
        from ingest_platform.query import keyword_query

        try:
            rows = (self.table.search(keyword_query(query), query_type="fts").select(["doc_id", "_score"])
                    .limit(DEPTH).to_arrow())
        except ValueError:  # a query of stop words only
            return []
        return rows["doc_id"].to_pylist()

    def runs(self, queries: dict[str, str]) -> dict[str, dict[str, list[str]]]:
        """Per mode (vector, keyword, hybrid), query id -> ranked document ids."""
        out: dict[str, dict[str, list[str]]] = {"vector": {}, "keyword": {}, "hybrid": {}}
        for qid, text in queries.items():
            v, k = self.vector(text), self.keyword(text)
            out["vector"][qid], out["keyword"][qid] = v, k
            out["hybrid"][qid] = rrf([v, k])
        return out


def rrf(lists: list[list[str]], k: int = RRF_K) -> list[str]:
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, doc in enumerate(ranked, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))


def main(argv: list[str] | None = None) -> dict:
    import argparse
    import sys
    import time

    from benchmarks.beir import evaluate
    from benchmarks.common import RESULTS, SCIFACT, WORK, load_qrels, load_queries, machine, print_table, read_jsonl, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="a bundled model name or a local model directory")
    ap.add_argument("--work", type=Path, default=WORK / "naive")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.dataset / "corpus.jsonl").exists():
        sys.exit(f"{args.dataset}: no corpus.jsonl (the shared datasets folder is not here)")
    docs = list(read_jsonl(args.dataset / "corpus.jsonl"))
    qrels = load_qrels(args.dataset, args.split)
    queries = {q: t for q, t in load_queries(args.dataset).items() if q in qrels}
    started = time.perf_counter()
    index = NaiveIndex([str(d["_id"]) for d in docs],
                       [record_text(d) for d in docs], args.work, args.model)
    build_s = time.perf_counter() - started
    modes = {mode: evaluate(run, qrels) for mode, run in index.runs(queries).items()}
    print_table(["mode", "nDCG@10", "recall@100", "MRR@10"],
                [[m, v["ndcg@10"], v["recall@100"], v["mrr@10"]] for m, v in modes.items()],
                title=f"naive whole-document script, {args.model}, {args.dataset.name} {args.split} ({len(queries)} queries)")
    out = {"dataset": args.dataset.name, "split": args.split, "queries": len(queries), "documents": len(docs),
           "model": args.model, "depth": DEPTH, "rrf_k": RRF_K, "modes": modes, "build_s": build_s,
           "machine": machine()}
    write_json(args.out or RESULTS / f"naive-{args.dataset.name}-{args.split}-{Path(args.model).name}.json", out)
    return out


if __name__ == "__main__":
    main()
