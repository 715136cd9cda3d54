"""The naive baseline: whole documents, one vector each, LanceDB BM25, plain RRF (k=60).

What a 40-line script does with the same model and database, and what the platform must beat:
each document's whole text (read naively from its file: pdfminer's text of a PDF, python-docx's
paragraphs, the HTML's text) is embedded once by all-MiniLM-L6-v2 (which reads its first 256
word pieces) and indexed in LanceDB with a full-text index; a query's vector and BM25 top lists
(``DEPTH`` documents each) are fused by reciprocal rank fusion with k = 60 and equal weights.

Used by ``benchmarks.fusion_cv`` (SciFact as records) and ``benchmarks.fidelity`` (SciFact
rendered as files). Vectors are cached under the work folder, keyed by model and texts.
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


class NaiveIndex:
    """Whole-document vectors and BM25 in one LanceDB table."""

    def __init__(self, ids: list[str], texts: list[str], work: Path):
        import lancedb
        import pyarrow as pa

        from ingest_platform.embedding import get_embedder

        self.embedder = get_embedder("all-MiniLM-L6-v2")
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
