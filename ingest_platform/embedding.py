"""Embeddings (sentence-transformers, or ONNX Runtime for a model that ships as ONNX) with a
persistent cache keyed by (model id, text hash).

Embedding dominates a build's cost on a CPU, so text that was embedded once, by this model, is
never embedded again: not on the next run, not when the same paragraph appears in two documents.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest_platform import faults, state
from ingest_platform.heap import release_free_heap
from ingest_platform.models import DEFAULT_MODEL, document_prompt, onnx_weights, query_prompt, resolve_model_path
from ingest_platform.models import model_id as _model_id
from ingest_platform.progress import Progress
from ingest_platform.storage import SegmentStore

log = logging.getLogger(__name__)


class Embedder:
    """One loaded model. Texts are sorted by length before batching so padding stays small.

    A model that ships as ONNX (``models.onnx_weights``) runs on ONNX Runtime, on the CPU whatever
    ``device`` says; any other through sentence-transformers on ``device``."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64):
        self.spec = model
        self.model_id = _model_id(model)
        self.batch_size = batch_size
        self.device = device
        # Neither torch modules nor an ONNX session's inference state is re-entrant; serialise encodes.
        self._lock = threading.Lock()
        self._onnx = None
        if onnx_weights(model) is not None:
            from ingest_platform import onnx_encoder

            self._onnx = onnx_encoder.for_model(model)
            self._prompts = (document_prompt(model), query_prompt(model))
            self.dim = self._onnx.dim
            self.max_seq_length = self._onnx.max_seq_length
            return
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load weights bar is noise in logs and the CLI
        self._model = SentenceTransformer(resolve_model_path(model), device=device)
        self.dim = int(self._model.get_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)

    def encode(
        self, texts: list[str], progress: Callable[[int], None] | None = None, chunk: int = 256
    ) -> np.ndarray:
        """Unit-normalised float32 vectors of passages, in input order.

        Through sentence-transformers' ``encode_document``: a model that configures a document
        prompt (e5's ``"passage: "``, bge's instructions) gets it, one without is encoded as is."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), chunk):
                idx = order[start : start + chunk]
                if self._onnx is not None:
                    out[idx] = self._onnx.embed([self._prompts[0] + texts[i] for i in idx])
                else:
                    out[idx] = self._model.encode_document(
                        [texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False,
                    )
                if progress:
                    progress(len(idx))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """One query, on one torch thread. A short text gains little from more, and on a small
        machine whose cores LanceDB's threads also use, torch's spinning OpenMP workers stall
        some queries badly (2 cores, a busy run: p99 208 ms on two threads vs 39 ms on one; see
        benchmarks/README.md, "Query latency"). The lock serialises encodes, so the switch is safe."""
        if self._onnx is not None:
            with self._lock:
                return self._onnx.embed([self._prompts[1] + text])[0]
        import torch

        with self._lock:
            threads = torch.get_num_threads()
            if threads != 1:
                torch.set_num_threads(1)
            try:
                return self._model.encode_query(  # the model's query prompt, if it has one
                    [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )[0].astype(np.float32)
            finally:
                if threads != 1:
                    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=4)
def _load(model: str, device: str) -> Embedder:
    return Embedder(model, device)


def get_embedder(model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int | None = None) -> Embedder:
    """Loaded once per process per (model, device) and shared: loading costs seconds."""
    embedder = _load(model, device)
    if batch_size:
        embedder.batch_size = batch_size
    return embedder


def cache_schema(dim: int) -> pa.Schema:
    return pa.schema([("text_sha256", pa.string()), ("vector", pa.list_(pa.float32(), dim))])


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "--", model_id)


class EmbeddingCache:
    """Vectors by text hash, one append-only segment folder per model id."""

    def __init__(self, home: Path, model_id: str, dim: int):
        self.store = SegmentStore(state.embeddings(home, _slug(model_id)), cache_schema(dim), "text_sha256")
        self.dim = dim

    def keys(self) -> set[str]:
        return self.store.keys()

    def add(self, hashes: list[str], vectors: np.ndarray, shard: str | None = None) -> None:
        """Cache ``vectors`` under ``hashes``, in a segment tagged with the ``shard`` they were
        embedded for (the index sync of that shard reads its own segments first)."""
        flat = pa.array(vectors.astype(np.float32).ravel(), pa.float32())
        self.store.append(
            pa.table({"text_sha256": pa.array(hashes, pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim)}), tag=shard,
        )

    def vectors_for(self, hashes: pa.Array | pa.ChunkedArray | list[str], shard: str | None = None) -> pa.Array:
        """Vectors aligned with ``hashes``; every hash must be cached (``KeyError`` otherwise)."""
        if isinstance(hashes, pa.ChunkedArray):
            hashes = hashes.combine_chunks()
        hashes = pa.array(hashes, pa.string()) if not isinstance(hashes, pa.Array) else hashes
        found = self.store.read(pc.unique(hashes).to_pylist(), tag=shard)
        # Duplicate segments (a compaction killed midway) hold identical vectors: keep the first.
        keys = found.column("text_sha256")
        first = pc.index_in(pc.unique(keys), keys)
        found = found.take(first)
        pos = pc.index_in(hashes, found.column("text_sha256"))
        if pos.null_count:
            missing = pc.filter(hashes, pc.is_null(pos))
            raise KeyError(f"{len(missing)} texts are not embedded yet (e.g. {missing[0]})")
        return found.column("vector").combine_chunks().take(pos)


SAVE_EVERY = 2048


@dataclass
class EmbedStats:
    model_id: str
    chunks: int
    unique_texts: int
    cache_hits: int
    embedded: int
    seconds: float

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.unique_texts if self.unique_texts else 1.0

    @property
    def chunks_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def embed_missing(
    texts: pa.Table | Iterable[tuple[str | None, pa.Table]], embedder: Embedder, cache: EmbeddingCache,
    progress: Callable[[int], None] | None = None,
) -> EmbedStats:
    """Embed the texts (columns ``text``, ``text_sha256``) the cache lacks.

    ``texts`` is one table or a re-iterable of (shard, table) pairs: they are read twice, once for
    the hashes (how much is left, for the progress line) and once for the texts, one table at a
    time, so memory holds one shard's texts, not the corpus's. Longest first within each, so
    batches hold similar lengths; saved every ``SAVE_EVERY`` texts, tagged with their shard, so a
    killed run keeps what it embedded."""
    tables = [(None, texts)] if isinstance(texts, pa.Table) else texts
    if iter(tables) is tables:  # a one-shot iterator cannot be read twice
        tables = list(tables)
    known = cache.keys()
    chunks, unique, missing = 0, set(), set()
    for _, t in tables:
        hashes = t.column("text_sha256").to_pylist()
        chunks += len(hashes)
        unique.update(hashes)
    missing = unique - known
    started = time.perf_counter()
    report = Progress("embedding", len(missing), progress, unit="chunk")
    embedded: set[str] = set()
    for shard, t in tables:
        todo: dict[str, str] = {}
        for h, text in zip(t.column("text_sha256").to_pylist(), t.column("text").to_pylist()):
            if h in missing and h not in embedded:
                todo.setdefault(h, text)
        order = sorted(todo, key=lambda h: -len(todo[h]))
        for start in range(0, len(order), SAVE_EVERY):
            part = order[start : start + SAVE_EVERY]
            vectors = embedder.encode([todo[h] for h in part], progress=report)
            faults.point("embed:before_save")
            cache.add(part, vectors, shard)
            release_free_heap()
        embedded.update(order)
    report.close()
    seconds = time.perf_counter() - started
    log.info("embedded %d new texts (%d cached) in %.1fs", len(embedded), len(unique) - len(missing), seconds)
    return EmbedStats(embedder.model_id, chunks, len(unique), len(unique) - len(missing), len(embedded), seconds)
