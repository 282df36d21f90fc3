#!/usr/bin/env bash
# Creates .venv (if missing) and installs vae-core with everything its tests and scripts need, CPU builds:
# torch pinned to 2.13.0 (an unpinned torch pulls several GB of CUDA wheels) and tensorflow-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[dev]"
