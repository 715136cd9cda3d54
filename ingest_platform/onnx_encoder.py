"""A sentence encoder run by ONNX Runtime: a transformer's ONNX export, its own fast tokenizer, the
model's pooling, unit vectors, as sentence-transformers would compute them.

Two users: models that ship only as ONNX (the default, ``bge-small-en-v1.5``, int8-quantised:
``ingest_platform.models.BUNDLED``), for both the build and queries; and the query side of a torch
model, exported once per machine (``ingest_platform.query_encoder``), where per-call overhead
matters more than anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class OnnxEncoder:
    """``embed(texts) -> (n, dim)`` unit float32 vectors, in input order.

    Parameters
    ----------
    weights: the ``.onnx`` file (inputs ``input_ids``, ``attention_mask`` and optionally
        ``token_type_ids``; first output the last hidden state).
    tokenizer: the model's ``tokenizer.json``.
    pooling: ``"cls"`` (the first token's vector, as bge) or ``"mean"`` (over real tokens).
    max_length: tokens read per text; longer texts are cut, as sentence-transformers does.
    threads: ONNX Runtime's intra-op threads (0: its default, one per core).

    Example
    -------
    >>> from ingest_platform.models import resolve_model_path
    >>> d = Path(resolve_model_path("bge-small-en-v1.5"))
    >>> OnnxEncoder(d / "model.onnx", d / "tokenizer.json", "cls", 512).embed(["a sentence"]).shape
    (1, 384)
    """

    def __init__(self, weights: str | os.PathLike, tokenizer: str | os.PathLike, pooling: str, max_length: int,
                 threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}: use 'cls' or 'mean'")
        self.pooling = pooling
        self.max_seq_length = max_length
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(weights), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> np.ndarray:
        """One text per run. An int8 model quantises its activations per run, over every token of
        the batch (padding too), so in a batch a text's vector would depend on the texts beside it;
        one at a time, a text always gets the same vector, which the embedding cache, incremental
        runs and parallel workers rely on. Batches of 16 chunk-sized texts were only 11% faster
        (bge-small-en-v1.5, 2 cores) and need no padding here."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            e = self.tokenizer.encode(text)
            feed = {"input_ids": np.asarray([e.ids], dtype=np.int64),
                    "attention_mask": np.asarray([e.attention_mask], dtype=np.int64),
                    "token_type_ids": np.asarray([e.type_ids], dtype=np.int64)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0][0]
            vec = hidden[0] if self.pooling == "cls" else hidden.mean(axis=0)
            out[i] = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return out


def for_model(model: str, threads: int = 0, weights: Path | None = None) -> OnnxEncoder:
    """The encoder of ``model`` (its own ``model.onnx``, or ``weights``: an export of it)."""
    from ingest_platform.models import max_seq_length, onnx_weights, pooling, resolve_model_path

    path = Path(resolve_model_path(model))
    weights = weights or onnx_weights(model)
    if weights is None:
        raise FileNotFoundError(f"{path} has no model.onnx")
    return OnnxEncoder(weights, path / "tokenizer.json", pooling(model), max_seq_length(model), threads)


__all__ = ["OnnxEncoder", "for_model"]
