#!/usr/bin/env bash
# Set up, then run the test suite. `--slow` also runs the slow (real-model) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--slow" ]; then shift; exec .venv/bin/python -m pytest -m "" "$@"; fi
exec .venv/bin/python -m pytest "$@"
