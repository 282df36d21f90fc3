"""The memory guard's estimate against the measured peak of real training runs, per backend.

For each model, one process per backend builds it (check_memory=False), trains one epoch of `batch` random
examples into an out_dir (so the checkpoint writes are inside the measurement) and reports its peak RSS
(ru_maxrss); the table puts `vae_core.estimate_training_memory`'s total beside it. The guard refuses above
REFUSE_SHARE of the available memory, so an estimate that is high by a little is safe and one that is low is not.

    .venv/bin/python -m scripts.bench_memory                       # writes scripts/results/bench_memory.{md,json}
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.benchlib import cpu_name, write_results

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3
# (label, VAESpec fields, batch size)
MODELS = [
    ("default MLP, 28x28", {"image_shape": [28, 28]}, 128),
    ("MLP, 64x64x3", {"image_shape": [64, 64, 3]}, 128),
    ("MLP, 128x128x3", {"image_shape": [128, 128, 3]}, 128),
    ("MLP, 256x256x3", {"image_shape": [256, 256, 3]}, 32),
    ("MLP 2048-2048, 128x128x3", {"image_shape": [128, 128, 3], "hidden_dims": [2048, 2048]}, 64),
    ("conv, 64x64x3", {"image_shape": [64, 64, 3], "architecture": "conv"}, 128),
    ("conv 32-64-128, 128x128x3", {"image_shape": [128, 128, 3], "architecture": "conv",
                                   "conv_channels": [32, 64, 128]}, 64),
]


def worker(backend: str, fields: dict, batch: int) -> dict:
    import numpy as np

    from vae_core import TrainConfig, VAESpec, build, fit

    spec = VAESpec(**fields)
    model = build(backend, spec, seed=0, check_memory=False)
    x = np.random.default_rng(0).random((batch, spec.input_dim), dtype=np.float32)
    with tempfile.TemporaryDirectory() as out:
        fit(model, x, None, TrainConfig(epochs=1, batch_size=batch), out_dir=out, progress=False, device="cpu")
    return {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,tf")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--worker", nargs=3, metavar=("BACKEND", "FIELDS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, fields, batch = args.worker
        print(json.dumps(worker(backend, json.loads(fields), int(batch))))
        return

    from vae_core import VAESpec, estimate_training_memory

    rows = []
    for label, fields, batch in MODELS:
        spec = VAESpec(**fields)
        row = {"model": label, "spec": fields, "batch": batch, "params": spec.num_params}
        for backend in args.backends.split(","):
            estimate = estimate_training_memory(spec, batch_size=batch, backend=backend)
            row[f"{backend}_estimate"] = estimate.total
            proc = subprocess.run([sys.executable, "-m", "scripts.bench_memory", "--worker", backend,
                                   json.dumps(fields), str(batch)], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{label} on {backend} failed:\n{proc.stderr[-3000:]}")
            row[backend] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss"]
            print(f"{label:28s} {backend:6s} peak {row[backend] / GIB:6.2f} GiB, estimate {estimate.total / GIB:6.2f}"
                  f" GiB", file=sys.stderr)
        rows.append(row)

    backends = args.backends.split(",")
    lines = ["# Memory guard: estimate against measured peak", "",
             f"CPU: {cpu_name()}. Command: `.venv/bin/python -m scripts.bench_memory`. One epoch of `batch` random "
             "examples per run, checkpoints written (last and best); peak RSS of the training process "
             "(ru_maxrss). The estimate is `vae_core.estimate_training_memory(..., backend=...)` (weights, gradients, "
             "Adam's moments, then the larger of a step (activations and the backend's temporaries) and a "
             "checkpoint write's copies, plus 1 GiB for the framework).", "",
             "| model | batch | parameters | " + " | ".join(f"{b} peak (GiB) | {b} estimate (GiB) | {b} estimate/peak"
                                                         for b in backends) + " |",
             "|---|---:|---:|" + "---:|---:|---:|" * len(backends)]
    for row in rows:
        cells = [f"{row[b] / GIB:.2f} | {row[b + '_estimate'] / GIB:.2f} | {row[b + '_estimate'] / row[b]:.2f}"
                 for b in backends]
        lines.append(f"| {row['model']} | {row['batch']} | {row['params']:,} | " + " | ".join(cells) + " |")
    write_results(args.out, "bench_memory", lines, rows)


if __name__ == "__main__":
    main()
