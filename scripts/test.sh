#!/usr/bin/env bash
# README command 2: set up the venv (idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XMODAL_DATA="${XMODAL_DATA:-../shared/data}"
export XMODAL_CACHE="${XMODAL_CACHE:-$PWD/.cache/xmodal}"
exec .venv/bin/python -m pytest -q -x -p no:cacheprovider -n 2 tests "$@"
