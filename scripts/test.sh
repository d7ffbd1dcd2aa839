#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole suite against real
# Triton, Milvus and Redis servers that the fixtures start. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
