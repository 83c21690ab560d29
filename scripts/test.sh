#!/usr/bin/env bash
# README command 2: set up the venv (idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XMODAL_DATA="${XMODAL_DATA:-../shared/data}"
export XMODAL_CACHE="${XMODAL_CACHE:-$PWD/.cache/xmodal}"
# two pytest workers on two cores: one math thread each, no oversubscription
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --durations=20 tests "$@"
