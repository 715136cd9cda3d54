"""The query side of embedding: one short text at a time, as fast as the CPU allows.

Building an index embeds thousands of texts in batches (``embedding.Embedder``); serving embeds one
query per request, where fixed per-call costs dominate: sentence-transformers' Python layers, torch's
dispatch and thread pool. Two backends give the same vectors:

- ``torch``: the index's own ``Embedder.encode_query`` (one torch thread).
- ``onnx``: ONNX Runtime on one thread (``ingest_platform.onnx_encoder``): the model's own
  ``model.onnx`` when it ships as ONNX (the default model does), else the same weights exported
  once per machine with ``torch.onnx.export`` to ``state.models()/onnx/<model>/model.onnx`` (the
  build does it, ``prepare``, so no query waits for it). Agreement of an export with torch is
  measured by ``benchmarks/query_latency.py`` on the SciFact queries (cosine >= 0.999 required).

Both keep the vectors of the last few hundred distinct query texts, so a query embedded for the
semantic cache is not embedded again for the search that follows, and repeated queries skip the
model even with the result cache off.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ingest_platform.models import DEFAULT_MODEL, model_id, onnx_weights, query_prompt, resolve_model_path

BACKENDS = ("torch", "onnx")
_MEMO = 512  # distinct query texts whose vectors are kept


class QueryEncoder:
    """``encode_query(text) -> unit float32 vector``, thread-safe, with a small memo of recent texts."""

    backend = "base"
    memo_size = _MEMO  # 0 turns the memo off (benchmarks timing the model itself)

    def __init__(self) -> None:
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()

    def _encode(self, text: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_query(self, text: str) -> np.ndarray:
        if not self.memo_size:
            return self._encode(text)
        with self._memo_lock:
            vec = self._memo.get(text)
            if vec is not None:
                self._memo.move_to_end(text)
                return vec
        vec = self._encode(text)
        vec.setflags(write=False)
        with self._memo_lock:
            self._memo[text] = vec
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        return vec


class TorchQueryEncoder(QueryEncoder):
    backend = "torch"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu"):
        super().__init__()
        from ingest_platform.embedding import get_embedder

        self.embedder = get_embedder(model, device)

    def _encode(self, text: str) -> np.ndarray:
        return self.embedder.encode_query(text)


def export_onnx(model: str, folder: Path) -> Path:
    """``folder/model.onnx``: the model's transformer (token ids -> last hidden state), exported once.
    Written to a temporary name and renamed, so a killed export leaves nothing half-written."""
    target = folder / "model.onnx"
    if target.exists():
        return target
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(model)
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModel.from_pretrained(path).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tok(["an example query", "another"], padding=True, return_tensors="pt")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".model.{os.getpid()}.{threading.get_ident()}.onnx"
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes about Python booleans and index ops concern shapes the query path does
        # not produce; agreement with torch is measured instead (benchmarks/query_latency.py).
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(base), tuple(sample[n] for n in names), str(tmp), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
    tmp.replace(target)
    (folder / "source.json").write_text(json.dumps({"model": model_id(model), "exported_from": "torch"}))
    return target


class OnnxQueryEncoder(QueryEncoder):
    """ONNX Runtime on one thread: the model's own ``model.onnx`` when it ships as ONNX, else its
    transformer exported once per machine (``export_onnx``)."""

    backend = "onnx"

    def __init__(self, model: str = DEFAULT_MODEL, cache_dir: str | os.PathLike | None = None, threads: int = 1):
        super().__init__()
        from ingest_platform import onnx_encoder

        # One thread: a single short query gains nothing from more, and on a small machine whose
        # cores LanceDB also uses, spinning worker threads stall (the torch encoder does the same).
        self.model_path = onnx_weights(model) or export_onnx(model, onnx_folder(model, cache_dir))
        self.encoder = onnx_encoder.for_model(model, threads, self.model_path)
        # What sentence-transformers' encode_query prepends for this model (e5: "query: ").
        self.prompt = query_prompt(model)
        self.dim = self.encoder.dim

    def _encode(self, text: str) -> np.ndarray:
        return self.encoder.embed([self.prompt + text])[0]


def onnx_folder(model: str, cache_dir: str | os.PathLike | None = None) -> Path:
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in model_id(model))
    from ingest_platform import state

    return Path(cache_dir or state.models()) / "onnx" / slug


def prepare(model: str, backend: str) -> None:
    """What serving ``backend`` needs before the first query: the ONNX export (seconds to a minute,
    once per machine and model). The index build calls it, so a query never pays for it."""
    if backend == "onnx" and onnx_weights(model) is None:
        export_onnx(model, onnx_folder(model))


@functools.lru_cache(maxsize=8)
def get_query_encoder(model: str = DEFAULT_MODEL, device: str = "cpu", backend: str = "torch",
                      cache_dir: str | None = None) -> QueryEncoder:
    """One encoder per process per (model, device, backend): loading costs seconds.

    ``backend="onnx"`` runs on the CPU whatever ``device`` says (a GPU would serve torch better)."""
    if backend == "torch":
        return TorchQueryEncoder(model, device)
    if backend == "onnx":
        return OnnxQueryEncoder(model, cache_dir)
    raise ValueError(f"unknown query encoder {backend!r}: use one of {', '.join(BACKENDS)}")


__all__ = ["QueryEncoder", "TorchQueryEncoder", "OnnxQueryEncoder", "get_query_encoder", "export_onnx", "prepare",
           "onnx_folder", "BACKENDS"]
