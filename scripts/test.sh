#!/usr/bin/env bash
# The test command: set up (idempotent), check the code (lint, format, types, import rules), then
# run the whole suite against real Triton, Milvus and Redis servers that the fixtures start.
# Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
say "ruff (lint + format), mypy (strict), import rules"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
