#!/usr/bin/env bash
# The README's main-job command: set up (idempotent), index the shipped sample corpus end to end
# through Dagster, and answer a query from the promoted index.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ingest-platform run
.venv/bin/ingest-platform query "${1:-What is the refund window for annual plans?}" --k 3
