#!/usr/bin/env bash
# Creates .venv (if missing) and installs vae-core with everything its tests and scripts need.
#
# torch is pinned with the torchvision release built against it: torchvision's compiled ops import only beside
# that torch (tests/backends/torch/test_seed_client_torch.py runs the seed's torchvision script). Change both together.
# VAE_TORCH_BUILD chooses their build:
#   default (unset): the build pip's configuration finds. Against the package registry on Linux that is the CUDA
#                    build (about 7.4 GB in the venv, NVIDIA libraries and triton included); our development
#                    machines and CI find the same CUDA build on a local disk.
#   cpu:             the CPU-only builds (+cpu) from PyTorch's own wheel index (no CUDA libraries, no triton from
#                    torch). That index is not reachable from our machines, so this path is not tested there.
# TensorFlow is always tensorflow-cpu (the dev extra), and JAX the CPU jaxlib that `pip install jax` brings, with flax
# and optax (the dev extra's jax extra; for NVIDIA GPUs install "jax[cuda12]" yourself). The dev extra also brings
# the loggers' packages, tensorboard (vae_core.callbacks.TensorBoard, and Keras' own keras.callbacks.TensorBoard)
# and mlflow-skinny (vae_core.callbacks.MLflow).
# and the export extra: onnx, onnxscript, onnxruntime and ai-edge-litert, which `vae export` writes and verifies
# its ONNX and LiteRT files with, and flatbuffers, with which jax.export serializes its files (docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="2.14.1"
TORCHVISION="0.29.1"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
case "${VAE_TORCH_BUILD:-default}" in
  default) torch_source=() ;;
  cpu) torch_source=(--index-url "$TORCH_CPU_INDEX") ;;
  *) echo "scripts/setup.sh: VAE_TORCH_BUILD must be 'default' or 'cpu'; got '${VAE_TORCH_BUILD}'" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ "${#torch_source[@]}" -gt 0 ]; then
  # +cpu names the build, so a venv that holds the CUDA builds is switched too
  "${pip[@]}" "${torch_source[@]}" "torch==${TORCH}+cpu" "torchvision==${TORCHVISION}+cpu"
fi
"${pip[@]}" "torch==${TORCH}" "torchvision==${TORCHVISION}" -e ".[dev]"
