#!/usr/bin/env bash
# The GPU checks in one call, for a bare device machine (torch and JAX with the CUDA jaxlib, no TensorFlow, no
# network). Four steps, chosen with GPU_CHECK_STEPS (comma-separated; default all: tests,torch,conv,jax):
#   tests: every CUDA-marked test (pytest -m gpu): torch on CUDA and JAX on its GPU (loss terms, forward, gradients,
#      200-step lockstep training) against the committed TF CPU reference
#      (tests/parity/fixtures/tf_cpu_reference.safetensors), and torch's fit/evaluate on CUDA. The JAX tests skip
#      where JAX sees no GPU, so on CUDA this script fails the step if JAX sees none (a CPU-only jaxlib);
#   torch: the torch backend's GPU benchmark on full Fashion-MNIST (python -m scripts.bench_torch --device cuda;
#      the target is at most 50 ms per 60,000-image epoch);
#   conv: the conv VAE's benchmark (python -m scripts.bench_conv): 20 epochs of the hand-written loop and of
#      torch's fit on CUDA, with test -ELBO and IWAE (TF is not on the device);
#   jax: the JAX benchmark (python -m scripts.bench_jax --device cuda --backends torch,jax): torch's and JAX's fit
#      side by side on full Fashion-MNIST, default MLP, 3 epochs, 2 interleaved rounds (images/s, compile
#      overhead, peak RSS and device memory, test loss, JAX/torch ratio; TF would be reported absent).
# Writes env.txt, gpu_tests.log, gpu_tests.xml, bench.log, bench_conv.log, bench_jax.log,
# bench/bench_torch_cuda.{md,json}, bench/bench_conv_cuda.{md,json} and bench/bench_jax_cuda.{md,json} under $OUT.
# The steps' timeouts (180 + 200 + 230 + 150 s) add up to more than the device's 600 s per command: run them in
# two calls, e.g. GPU_CHECK_STEPS=tests,jax (at most 330 s), then GPU_CHECK_STEPS=torch,conv (at most 430 s).
#
# Fashion-MNIST: the device has no network and no Debian package, so carry a copy. Here, once:
#   mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/    (.data/ is git-ignored; 30 MB)
# then run with carry [".data"]:  GPU_CHECK_STEPS=tests,jax bash scripts/gpu_check.sh
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (small subsets), to check the script itself where no GPU is.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
STEPS=",${GPU_CHECK_STEPS:-tests,torch,conv,jax},"
step() { [[ "$STEPS" == *",$1,"* ]]; }
mkdir -p "$OUT/bench"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
[ -d .data ] && export VAE_CORE_DATA="$PWD/.data"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'default backend',
jax.default_backend(), jax.devices())" 2>&1 | grep -v '^WARNING\|^I0000'
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
jax_gpu() { "$PY" -c "import jax, sys; sys.exit(not jax.devices('gpu'))" >/dev/null 2>&1; }
if [ "$DEVICE" = cuda ] && { step tests || step jax; } && ! jax_gpu; then
  echo "gpu_check: JAX sees no GPU (see $OUT/env.txt; the CPU jaxlib?): its GPU tests would skip and" \
       "bench_jax --device cuda cannot run" >&2
  status=1
fi

# 1. CUDA-marked tests (torch's, then JAX's). Without CUDA (the dry run) they skip, which pytest reports as such.
# JAX would preallocate 75% of the GPU beside torch in this one process: it allocates as it goes here instead.
step tests && { XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs \
  tests/parity/test_gpu.py tests/backends/torch/test_torch_train.py --junitxml="$OUT/gpu_tests.xml" 2>&1 \
  | tee "$OUT/gpu_tests.log" || status=1; }

# 2. The benchmark: the seed-style loop against ours, 4 epochs each (the first holds compile time).
epochs=4; limit=()
[ "$DEVICE" = cpu ] && { epochs=2; limit=(--limit 2000 --variants reference,fp32); }
step torch && { timeout 200 "$PY" -m scripts.bench_torch --device "$DEVICE" --epochs "$epochs" "${limit[@]}" \
  --out "$OUT/bench" 2>&1 | tee "$OUT/bench.log" || status=1; }

# 3. The conv benchmark: 20 epochs (2 on a small subset in the dry run), IWAE with k = 100 on 1,000 test images.
conv=(--epochs 20); [ "$DEVICE" = cpu ] && conv=(--epochs 2 --limit 2000)
step conv && { timeout 230 "$PY" -m scripts.bench_conv "${conv[@]}" --variants loop,torch --iwae-k 100 \
  --out bench_conv_cuda --results-dir "$OUT/bench" 2>&1 | tee "$OUT/bench_conv.log" || status=1; }

# 4. The JAX benchmark: torch's and JAX's fit side by side (no TF on the device), 3 epochs (the first holds the
# compile), 2 rounds interleaved; in the dry run 2 epochs of 2,000 images, 1 round, on the CPU.
jaxb=(--epochs 3 --rounds 2); [ "$DEVICE" = cpu ] && jaxb=(--epochs 2 --limit 2000)
step jax && { timeout 150 "$PY" -m scripts.bench_jax --device "$DEVICE" --backends torch,jax "${jaxb[@]}" \
  --out bench_jax_$DEVICE --out-dir "$OUT/bench" 2>&1 | grep --line-buffered -v 'oneDNN\|absl::InitializeLog' \
  | tee "$OUT/bench_jax.log" || status=1; }
exit "$status"
