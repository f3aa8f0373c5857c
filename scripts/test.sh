#!/usr/bin/env bash
# Set up, then run the test suite. `--slow` also runs the slow (real-model) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test of `qesim explore` (tests/test_explore_browser.py) drives Debian's headless
# chromium through chromium-driver: install them once on a fresh machine (no-op when present;
# no browser is downloaded at run time).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null
  fi
fi
if [ "${1:-}" = "--slow" ]; then shift; exec .venv/bin/python -m pytest -m "" "$@"; fi
.venv/bin/python -m pytest "$@"
# The wheel test (tests/test_packaging.py, slow: builds the wheel, installs it without extras into a
# fresh venv, runs the main commands from another directory) runs after the default suite, so every
# CI run checks the installed package too. QESIM_SKIP_PACKAGING=1 skips it locally.
if [ $# -eq 0 ] && [ -z "${QESIM_SKIP_PACKAGING:-}" ]; then
  exec .venv/bin/python -m pytest -m slow tests/test_packaging.py
fi
