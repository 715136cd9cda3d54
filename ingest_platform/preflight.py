"""Offline-readiness checks, run by ``scripts/setup.sh`` right after installing.

The machines that run this platform have no internet, so anything that would be fetched lazily at
first use (unstructured's spaCy pipeline, an embedding model from the hub) must already be on disk.
These checks exercise each such thing once, with outbound connections blocked, so a broken install
fails at setup time instead of in the middle of a build.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


class _NetworkBlocked(OSError):
    pass


@contextlib.contextmanager
def _no_network() -> Iterator[None]:
    """Make any outbound connection fail at once, so a check cannot pass by downloading."""

    def refuse(*_args, **_kwargs):
        raise _NetworkBlocked("network access attempted during an offline preflight check")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect, socket.create_connection = refuse, refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved  # type: ignore[method-assign]


def check_spacy() -> str:
    """unstructured's text classification loads the spaCy pipeline from the local directory."""
    from ingest_platform import offline

    offline.prepare()
    tokenize = importlib.import_module("unstructured.nlp.tokenize")
    with _no_network():
        sentences = tokenize.sent_tokenize("The parser is ready. It works offline.")
    if len(sentences) != 2:
        raise RuntimeError(f"unexpected sentence split {sentences!r}")
    return f"loaded from {tokenize._SPACY_MODEL_NAME} (no download)"


def check_embedding_models() -> str:
    """Every bundled embedding model is on disk, its ONNX weights are the file we measured (a
    repackaged file, checked by digest), and each embeds a sentence with the network blocked."""
    import hashlib

    from ingest_platform.embedding import Embedder
    from ingest_platform.models import BUNDLED, onnx_weights, resolve_model_path

    found = []
    for name, spec in BUNDLED.items():
        path = Path(resolve_model_path(name))
        if not (path / "config.json").is_file():
            raise RuntimeError(f"{name}: {path} has no config.json (is {spec.package} installed?)")
        weights = onnx_weights(name)
        if spec.sha256 and (weights is None or hashlib.sha256(weights.read_bytes()).hexdigest() != spec.sha256):
            raise RuntimeError(f"{name}: {path}/model.onnx is missing or not the file this release was measured with")
        with _no_network():
            vec = Embedder(name).encode(["The parser is ready."])[0]
        if abs(float((vec**2).sum()) - 1.0) > 1e-3:
            raise RuntimeError(f"{name}: the embedding is not a unit vector")
        found.append(f"{name} ({len(vec)} dims)")
    return ", ".join(found)


def check_pandoc() -> str:
    """pandoc converts EPUB, ODT and RTF."""
    from ingest_platform import offline

    path = offline.pandoc_path()
    if path is None:
        raise RuntimeError("no pandoc (pypandoc_binary's or on PATH): EPUB/ODT/RTF cannot be parsed")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=True)
    return f"{out.stdout.splitlines()[0]} at {path}"


def check_torch() -> str:
    """torch is the small CPU build, or a CUDA build on a machine that has a GPU."""
    import torch

    if torch.version.cuda is None:
        return f"{torch.__version__} (CPU build)"
    if torch.cuda.is_available():
        return f"{torch.__version__} (CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s))"
    raise RuntimeError(
        f"{torch.__version__} is a CUDA build but no GPU is visible: install the CPU wheel "
        "(scripts/setup.sh installs torch first for this reason)"
    )


def check_pdf_partitioner() -> str:
    """unstructured's PDF module imports unstructured_inference, installed separately (--no-deps)."""
    from ingest_platform import offline

    offline.prepare()
    importlib.import_module("unstructured.partition.pdf")
    return "unstructured.partition.pdf imports"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("spaCy pipeline", check_spacy),
    ("embedding models", check_embedding_models),
    ("pandoc", check_pandoc),
    ("torch", check_torch),
    ("PDF partitioner", check_pdf_partitioner),
]


def run_checks() -> list[CheckResult]:
    """Every check, each isolated: one failure does not hide the others."""
    results = []
    for name, check in CHECKS:
        try:
            results.append(CheckResult(name, True, check()))
        except Exception as exc:  # noqa: BLE001 - report every kind of failure as a failed check
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results


def main() -> None:
    """Print one line per check; exit non-zero if any failed (setup.sh runs with ``set -e``)."""
    results = run_checks()
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
    if not all(r.ok for r in results):
        raise SystemExit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
