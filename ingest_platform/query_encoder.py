"""The query side of embedding: one short text at a time, as fast as the CPU allows.

Building an index embeds thousands of texts in batches (``embedding.Embedder``); serving embeds one
query per request, where fixed per-call costs dominate: sentence-transformers' Python layers, torch's
dispatch and thread pool. Two backends give the same vectors:

- ``torch``: the index's own ``Embedder.encode_query`` (one torch thread).
- ``onnx``: the same weights exported once per machine with ``torch.onnx.export`` to
  ``state.models()/onnx/<model>/model.onnx`` (the build does it, ``prepare``, so no query waits
  for it) and run by ONNX Runtime on one thread, tokenized by the
  model's own fast tokenizer (``tokenizer.json``), mean-pooled and L2-normalised as the
  sentence-transformers model does. Agreement with torch is measured by
  ``benchmarks/query_latency.py`` on the SciFact queries (cosine >= 0.999 required).

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

from ingest_platform.models import model_id, query_prompt, resolve_model_path

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

    def __init__(self, model: str = "default", device: str = "cpu"):
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
    backend = "onnx"

    def __init__(self, model: str = "default", cache_dir: str | os.PathLike | None = None, threads: int = 1):
        super().__init__()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(resolve_model_path(model))
        self.model_path = export_onnx(model, onnx_folder(model, cache_dir))
        max_len = 256
        cfg = path / "sentence_bert_config.json"
        if cfg.exists():
            max_len = int(json.loads(cfg.read_text()).get("max_seq_length", max_len))
        # What sentence-transformers' encode_query prepends for this model (e5: "query: ").
        self.prompt = query_prompt(model)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        # One thread: a single short query gains nothing from more, and on a small machine whose
        # cores LanceDB also uses, spinning worker threads stall (the torch encoder does the same).
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1] or 0) or None

    def _encode(self, text: str) -> np.ndarray:
        enc = self.tokenizer.encode(self.prompt + text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        types = np.asarray([enc.type_ids], dtype=np.int64)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        m = mask[..., None].astype(np.float32)
        vec = (hidden * m).sum(1)[0] / max(float(m.sum()), 1e-9)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)


def onnx_folder(model: str, cache_dir: str | os.PathLike | None = None) -> Path:
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in model_id(model))
    from ingest_platform import state

    return Path(cache_dir or state.models()) / "onnx" / slug


def prepare(model: str, backend: str) -> None:
    """What serving ``backend`` needs before the first query: the ONNX export (seconds to a minute,
    once per machine and model). The index build calls it, so a query never pays for it."""
    if backend == "onnx":
        export_onnx(model, onnx_folder(model))


@functools.lru_cache(maxsize=8)
def get_query_encoder(model: str = "default", device: str = "cpu", backend: str = "torch",
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
