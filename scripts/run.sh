#!/usr/bin/env bash
# The main job on the embedded defaults: set up, reproduce the QE paper's Table 8 into reports/ and print it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/qesim reproduce table8 --out reports "$@"
