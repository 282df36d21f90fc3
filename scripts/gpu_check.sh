#!/usr/bin/env bash
# The GPU checks in one call, for a bare device machine (torch, no TensorFlow, no network):
#   1. every CUDA-marked test (pytest -m gpu): torch on CUDA against the committed TF CPU reference
#      (tests/parity/fixtures/tf_cpu_reference.safetensors), and fit/evaluate on CUDA;
#   2. the torch backend's GPU benchmark on full Fashion-MNIST (python -m scripts.bench_torch --device cuda; the target
#      is at most 50 ms per 60,000-image epoch);
#   3. the conv VAE's benchmark (python -m scripts.bench_conv): 20 epochs of the hand-written loop and of torch's fit
#      on CUDA, with test -ELBO and IWAE (TF is not on the device).
# Writes env.txt, gpu_tests.log, gpu_tests.xml, bench.log, bench_conv.log, bench/bench_torch_cuda.{md,json} and
# bench/bench_conv_cuda.{md,json} under $OUT.
#
# Fashion-MNIST: the device has no network and no Debian package, so carry a copy. Here, once:
#   mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/    (.data/ is git-ignored; 30 MB)
# then run with carry [".data"]:  bash scripts/gpu_check.sh
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU, to check the script itself where no GPU is.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
mkdir -p "$OUT/bench"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
[ -d .data ] && export VAE_CORE_DATA="$PWD/.data"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: torch sees no CUDA device (see $OUT/env.txt); set GPU_CHECK_DEVICE=cpu to dry-run" >&2
  exit 2
fi

if [ "$DEVICE" = cuda ] && [ ! -d .data/fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "gpu_check: Fashion-MNIST is missing: copy it into .data/fashion-mnist and carry .data (see this script's header)" >&2
  exit 2
fi

status=0
# 1. CUDA-marked tests. Without CUDA (the dry run) they skip, which pytest reports as such.
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/parity/test_gpu.py tests/backends/torch/test_torch_train.py \
  --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log" || status=1

# 2. The benchmark: the seed-style loop against ours, 4 epochs each (the first holds compile time).
# The three timeouts add up to 580 s, inside the device's 600 s per command.
epochs=4; limit=()
[ "$DEVICE" = cpu ] && { epochs=2; limit=(--limit 2000 --variants reference,fp32); }
timeout 200 "$PY" -m scripts.bench_torch --device "$DEVICE" --epochs "$epochs" "${limit[@]}" --out "$OUT/bench" \
  2>&1 | tee "$OUT/bench.log" || status=1

# 3. The conv benchmark: 20 epochs (2 on a small subset in the dry run), IWAE with k = 100 on 1,000 test images.
conv=(--epochs 20); [ "$DEVICE" = cpu ] && conv=(--epochs 2 --limit 2000)
timeout 230 "$PY" -m scripts.bench_conv "${conv[@]}" --variants loop,torch --iwae-k 100 --out bench_conv_cuda \
  --results-dir "$OUT/bench" 2>&1 | tee "$OUT/bench_conv.log" || status=1
exit "$status"
