#!/usr/bin/env bash
# Creates .venv (if missing) and installs vae-core with everything its tests and scripts need.
#
# VAE_TORCH_BUILD chooses torch 2.13.0's build:
#   default (unset): the build pip's configuration finds. Against the package registry on Linux that is the CUDA
#                    build (about 6.6 GB in the venv, NVIDIA libraries and triton included); on a machine whose pip
#                    points at a local CPU wheel, that wheel.
#   cpu:             the CPU-only build from PyTorch's own wheel index (no CUDA libraries, no triton from torch).
# TensorFlow is always tensorflow-cpu (the dev extra).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
case "${VAE_TORCH_BUILD:-default}" in
  default) torch_source=() ;;
  cpu) torch_source=(--index-url "$TORCH_CPU_INDEX") ;;
  *) echo "scripts/setup.sh: VAE_TORCH_BUILD must be 'default' or 'cpu'; got '${VAE_TORCH_BUILD}'" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ "${#torch_source[@]}" -gt 0 ]; then
  # +cpu names the build, so a venv that holds the CUDA build of 2.13.0 is switched too
  "${pip[@]}" "${torch_source[@]}" "torch==2.13.0+cpu"
fi
"${pip[@]}" "torch==2.13.0" -e ".[dev]"
