#!/usr/bin/env bash
# Create .venv with the verified stack and install xmodal (and its example plugins' deps).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0 \
    -e ".[test,export,examples,search,bench]" "$@"
