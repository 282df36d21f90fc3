"""Each export format of the default model (784-400-400-20, Bernoulli), trained for a few epochs on mnist-5k: its
error against the float64 NumPy reference, its size, the time to write and verify it, and the encoder's throughput
in its runtime (images/s at batch 1 and batch 256), beside our own torch and TF models' `encode`, on this CPU.

The error is what `vae_core.export`'s verification measures (max |exported - reference| over the encoder's and
decoder's outputs, on its fixed batch of 16 rows and on 1 row). Throughput runs the runners verification uses
(`vae_core.deploy.runtimes.load`: onnxruntime, tf.saved_model.load's signature, the LiteRT interpreter's signature
runner, torch.export.load's module; NumPy in, NumPy out) on mnist-5k's test images, each runtime with its default
threads; each figure is the median of `--repeats` timed runs after a warm-up. Baselines: the torch model's
`encode` under `torch.no_grad()`, the TF model's `encode` called eagerly, and the same in a `tf.function`.

    .venv/bin/python -m scripts.bench_export --out          # the committed run (scripts/results/bench_export.*)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from scripts.benchlib import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
BATCHES = (1, 256)


def _throughput(run: Callable[[np.ndarray], object], x: np.ndarray, batch: int, repeats: int,
                seconds: float = 0.5) -> float:
    """Images per second of `run` on batches of `batch` rows of x: the median of `repeats` runs of about `seconds`
    each, after a warm-up."""
    rows = x[:batch]
    run(rows)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.1:  # size the runs from a short one
        run(rows)
        calls += 1
    per_run = max(1, int(calls * seconds / max(time.perf_counter() - start, 1e-9)))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_run):
            run(rows)
        rates.append(batch * per_run / (time.perf_counter() - start))
    return statistics.median(rates)


def _baselines(checkpoint: Path) -> dict[str, Callable[[np.ndarray], object]]:
    import tensorflow as tf
    import torch

    import vae_core

    torch_model = vae_core.load_checkpoint(checkpoint, "torch").eval()
    tf_model = vae_core.load_checkpoint(checkpoint, "tf")
    compiled = tf.function(tf_model.encode, input_signature=[tf.TensorSpec((None, 784), tf.float32)])

    def torch_encode(rows):
        with torch.no_grad():
            return [t.numpy() for t in torch_model.encode(torch.from_numpy(rows))]
    return {"torch model `encode` (no_grad)": torch_encode,
            "TF model `encode` (eager)": lambda rows: [t.numpy() for t in tf_model.encode(rows)],
            "TF model `encode` in a tf.function": lambda rows: [t.numpy() for t in compiled(tf.constant(rows))]}


def run(epochs: int, repeats: int) -> dict:
    import vae_core
    from vae_core.data import load_dataset
    from vae_core.deploy import FORMATS
    from vae_core.deploy.formats import MANIFEST
    from vae_core.deploy.runtimes import load

    data = load_dataset("mnist-5k")
    x = np.ascontiguousarray(data.x_test[:256], dtype=np.float32)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    spec = vae_core.VAESpec()
    vae_core.fit(vae_core.build("torch", spec, seed=0), data.x_train, data.x_test,
                 vae_core.TrainConfig(epochs=epochs, batch_size=128), out_dir=work / "run", progress=False)
    checkpoint = work / "run" / "best.safetensors"
    checkpoint_bytes = checkpoint.stat().st_size
    rows = []
    for name, fmt in FORMATS.items():
        start = time.perf_counter()
        result = vae_core.export(checkpoint, work / name, format=name)
        seconds = time.perf_counter() - start
        size = sum((result.out_dir / f).stat().st_size for f in result.files if f != MANIFEST)
        encode = load(result.out_dir, fmt, spec)["encoder"]
        rows.append({"what": name, "runtime": result.verification.runtime, "writer": result.manifest["writer"],
                     "max_abs_error": result.verification.max_abs_error, "errors": result.verification.errors,
                     "bytes": size, "export_seconds": seconds,
                     **{f"images_per_s_batch_{b}": _throughput(encode, x, b, repeats) for b in BATCHES}})
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    for name, encode in _baselines(checkpoint).items():
        rows.append({"what": name, **{f"images_per_s_batch_{b}": _throughput(encode, x, b, repeats)
                                      for b in BATCHES}})
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return {"spec": spec.to_dict(), "epochs": epochs, "checkpoint_bytes": checkpoint_bytes,
            "repeats": repeats, "rows": rows}


def _markdown(result: dict, command: str) -> str:
    lines = ["# Export formats: error, size and encoder throughput", "", f"Command: `{command}`", "",
             f"Machine: {result['cpu']}, {result['cores']} cores (shared with other work); {result['date']}.", "",
             f"Model: the default spec (784-400-400-20, Bernoulli), trained {result['epochs']} epochs on mnist-5k in "
             f"torch; its checkpoint is {result['checkpoint_bytes'] / 1e6:.2f} MB. Versions: {result['versions']}.",
             "", "| format | runtime | max abs error | size (MB) | export + verify (s) | encode, batch 1 (images/s) "
                 "| encode, batch 256 (images/s) |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        error = f"{row['max_abs_error']:.1e}" if "max_abs_error" in row else "-"
        size = f"{row['bytes'] / 1e6:.2f}" if "bytes" in row else "-"
        took = f"{row['export_seconds']:.1f}" if "export_seconds" in row else "-"
        lines.append(f"| {row['what']} | {row.get('runtime', '-')} | {error} | {size} | {took} | "
                     f"{row['images_per_s_batch_1']:,.0f} | {row['images_per_s_batch_256']:,.0f} |")
    lines += ["", "The error is the largest over the encoder's mean and log_var and the decoder's mean "
                  "(probabilities), against the float64 NumPy reference of the same checkpoint; the tolerance is "
                  "1e-5 (scaled by |reference| above 1). Size is the files of the format, export.json aside. Export "
                  "+ verify is the wall time of `vae_core.export` (a framework's first format includes its warm-up). "
                  "Throughput is the encoder alone, NumPy in and out, the "
                  f"median of {result['repeats']} timed runs of about 0.5 s each, with each runtime's default "
                  "threads, on a machine whose 2 cores other work shares: compare rows of one run, not runs."]
    return "\n".join(lines) + "\n"


def _versions() -> str:
    """The frameworks', exporters' and runtimes' versions."""
    from importlib.metadata import version

    from vae_core.registry import backend_module

    found = {**backend_module("torch").export.versions(), **backend_module("tf").export.versions(),
             **backend_module("jax").export.versions()}
    found.update({name: version(name) for name in ("onnx", "onnxscript", "onnxruntime", "ai-edge-litert",
                                                   "flatbuffers")})
    return ", ".join(f"{name} {v}" for name, v in found.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="torch epochs on mnist-5k before exporting (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per throughput figure (default 5)")
    p.add_argument("--out", nargs="?", const="bench_export", default=None, metavar="NAME",
                   help="write scripts/results/NAME.md and NAME.json (default name: bench_export)")
    args = p.parse_args(argv)
    result = run(args.epochs, args.repeats)
    result.update(cpu=cpu_name(), cores=os.cpu_count(), date=datetime.now().strftime("%Y-%m-%d %H:%M"),
                  versions=_versions())
    command = " ".join(["python -m scripts.bench_export", shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    text = _markdown(result, command)
    print(text)
    if args.out:
        (RESULTS / f"{args.out}.md").write_text(text)
        (RESULTS / f"{args.out}.json").write_text(json.dumps({"command": command, **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
