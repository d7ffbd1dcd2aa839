#!/usr/bin/env bash
# The main job: set up (idempotent), then run the local stack with the demo catalog indexed.
# Ctrl-C stops everything. Extra args go to `imagesearch up` (see `imagesearch up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/imagesearch up --demo "$@"
