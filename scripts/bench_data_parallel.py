"""Data-parallel throughput: images/s of `vae_core.fit` on full Fashion-MNIST with 1 and 2 workers, 1 thread each.

    python -m scripts.bench_data_parallel --epochs 3 --out scripts/results/bench_data_parallel

- torch: torchrun (torch.distributed.run, gloo) with 1 and 2 processes, OMP_NUM_THREADS=1 and
  torch.set_num_threads(1) in each. One process runs without DDP, as `fit` does when WORLD_SIZE is 1.
- TF: one process; no strategy (XLA step), then a MirroredStrategy over 1 and 2 logical CPU devices (Keras runs
  a strategy's step without XLA), with 1 intra-op thread and as many inter-op threads as replicas.

The default MLP spec, batch 128 (the global batch), uint8 pixels. s/epoch is the median over the epochs after the
first (the first carries tracing and compilation); images/s is 60,000 / that. The final train loss shows the runs
compute the same thing. Writes <out>.json and <out>.md; each worker is a subprocess, so run nothing else
meanwhile (2-core machine).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128


def allreduce_worker(out: Path) -> None:
    """Under torchrun: the seconds of one gloo all-reduce of the default model's gradients (float32), median of
    50, and of one float (the size of the trainer's stop agreement); rank 0 writes `out`."""
    import time

    import torch
    import torch.distributed as dist

    from vae_core import VAESpec

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    results = {}
    for name, size in (("gradients", VAESpec().num_params), ("one_float", 1)):
        tensor, times = torch.randn(size), []
        for _ in range(55):
            start = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - start)
        results[name] = float(np.median(times[5:]))
    if dist.get_rank() == 0:
        out.write_text(json.dumps({**results, "bytes": VAESpec().num_params * 4}))
    dist.destroy_process_group()


def worker(backend: str, replicas: int, epochs: int, out: Path) -> None:
    """One measurement, in this process (or this torchrun rank); rank 0 writes `out`."""
    from scripts.benchlib import fashion_mnist
    import vae_core
    from vae_core import TrainConfig, VAESpec

    strategy = None
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, replicas))
        if replicas > 0:
            from backends.tf.distributed import mirrored_strategy

            strategy = mirrored_strategy(replicas)
    x_train, _ = fashion_mnist(dtype="uint8")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = vae_core.build(backend, VAESpec(), seed=0)
    history = vae_core.fit(model, x_train, None, TrainConfig(epochs=epochs, batch_size=BATCH, seed=0),
                           progress=False, device="cpu" if strategy is None else "auto")
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps({"seconds": history["seconds"], "train_loss": history["train_loss"],
                                   "n": len(x_train), "steps": -(-len(x_train) // BATCH)}))


def _launch(workers: int, tail: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(workers),
            "--module", "scripts.bench_data_parallel", *tail]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": ""}


def _allreduce() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(_launch(2, ["--worker", "allreduce", "--result", str(out)]), cwd=ROOT, env=_env(), check=True)
        return json.loads(out.read_text())


def _run(backend: str, workers: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        tail = ["--worker", backend, "--replicas", str(workers), "--epochs", str(epochs), "--result", str(out)]
        command = _launch(workers, tail) if backend == "torch" else \
            [sys.executable, "-m", "scripts.bench_data_parallel", *tail]
        subprocess.run(command, cwd=ROOT, env=_env(), check=True)
        result = json.loads(out.read_text())
    per_epoch = float(np.median(result["seconds"][1:] or result["seconds"]))
    return {"backend": backend, "workers": workers, "seconds_per_epoch": per_epoch,
            "images_per_second": result["n"] / per_epoch, "step_seconds": per_epoch / result["steps"],
            "final_train_loss": result["train_loss"][-1], "train_loss": result["train_loss"],
            "seconds": result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    parser.add_argument("--backends", default="torch,tf")
    parser.add_argument("--worker", choices=("torch", "tf", "allreduce"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--replicas", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "allreduce":
        allreduce_worker(args.result)
        return
    if args.worker:
        worker(args.worker, args.replicas, args.epochs, args.result)
        return
    from scripts.benchlib import cpu_name

    rows = []
    for backend in args.backends.split(","):
        for workers in ((1, 2) if backend == "torch" else (0, 1, 2)):  # TF 0: no strategy (the XLA step)
            rows.append(_run(backend, workers, args.epochs))
            print(json.dumps(rows[-1]), file=sys.stderr)
    command = "python -m scripts.bench_data_parallel " + " ".join(sys.argv[1:])
    lines = [f"# Data-parallel throughput, {cpu_name()}, 1 thread per worker", "", f"`{command}`", "",
             "| backend | workers | s/epoch | images/s | vs 1 worker | final train loss |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = next(r for r in rows if r["backend"] == row["backend"] and r["workers"] == 1)
        name = {0: "1 (no strategy, XLA)"}.get(row["workers"], str(row["workers"]))
        if row["backend"] == "tf" and row["workers"]:
            name += " (MirroredStrategy)"
        lines.append(f"| {row['backend']} | {name} | {row['seconds_per_epoch']:.2f} | {row['images_per_second']:,.0f} "
                     f"| {base['seconds_per_epoch'] / row['seconds_per_epoch']:.2f}x | {row['final_train_loss']:.4f} |")
    reduce = _allreduce()
    lines += ["", "Train loss per epoch (the runs compute the same steps; float32 rounding parts them slowly):", ""]
    lines += [f"- {r['backend']} {r['workers']}: " + ", ".join(f"{v:.4f}" for v in r["train_loss"]) for r in rows]
    lines += ["", *_on_paper(reduce, next(r for r in rows if r["backend"] == "torch" and r["workers"] == 1)
                             if any(r["backend"] == "torch" for r in rows) else None)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows, "allreduce": reduce},
                                                            indent=1))
        args.out.with_suffix(".md").write_text(text)


# Interconnects for the estimate: (name, bandwidth in bytes/s a ring all-reduce reaches at ~4 MB messages, latency
# per ring hop in seconds). NVLink 4 (H100/H200 SXM) is 450 GB/s per direction; NCCL reaches roughly half of it at
# a 4 MB message. 100 Gb/s Ethernet is 12.5 GB/s; ~11 GB/s is what NCCL over RoCE or sockets gets.
LINKS = (("NVLink 4 (one host)", 225e9, 5e-6), ("100 Gb/s Ethernet (one GPU per host)", 11e9, 20e-6))


def _on_paper(reduce: dict, torch_row: dict | None) -> list[str]:
    """Multi-GPU on paper: a ring all-reduce of the gradients moves 2 (W - 1) / W of their bytes per worker, in
    2 (W - 1) hops; against the measured step times."""
    size = reduce["bytes"]
    lines = ["## Multi-GPU, on paper", "",
             f"The default model's gradients are {size / 1e6:.2f} MB (float32). A ring all-reduce over W workers "
             f"moves 2(W-1)/W of them through each worker's link, in 2(W-1) hops: t = 2(W-1)/W x bytes / bandwidth "
             f"+ 2(W-1) x latency.", "",
             "| link | W = 2 | W = 8 |", "|---|---:|---:|"]
    for name, bandwidth, latency in LINKS:
        cells = [2 * (w - 1) / w * size / bandwidth + 2 * (w - 1) * latency for w in (2, 8)]
        lines.append(f"| {name} | {cells[0] * 1e6:.0f} µs | {cells[1] * 1e6:.0f} µs |")
    lines.append(f"| measured here: gloo, 2 processes on this host (TCP loopback) | "
                 f"{reduce['gradients'] * 1e3:.2f} ms | |")
    lines += ["", f"Measured here: a gloo all-reduce of one float takes {reduce['one_float'] * 1e6:.0f} µs (the "
                  f"trainer agrees on stop signals with one every 8 steps)."]
    if torch_row is not None:
        lines.append(f"One torch process with 1 thread takes {torch_row['step_seconds'] * 1e3:.1f} ms a step "
                     f"(batch 128), so on this CPU the all-reduce costs "
                     f"{reduce['gradients'] / torch_row['step_seconds']:.0%} of a whole step, more of a half-batch "
                     f"step, and the two processes also share the two cores with gloo's threads.")
    step = 0.05 / 469  # the CUDA benchmark's target: 50 ms an epoch of 469 steps
    ratios = [[(2 * (w - 1) / w * size / bandwidth + 2 * (w - 1) * latency) / step for w in (2, 8)]
              for _, bandwidth, latency in LINKS]
    lines += [f"No GPU was lent, so the GPU step time is not measured. At the CUDA target of 50 ms an epoch "
              f"({step * 1e3:.2f} ms a step), an all-reduce over NVLink would cost {ratios[0][0]:.0%} (W = 2) to "
              f"{ratios[0][1]:.0%} (W = 8) of a step's time, and over 100 Gb/s Ethernet {ratios[1][0]:.1f}x to "
              f"{ratios[1][1]:.1f}x it (DDP overlaps some of it with the backward pass): this model is too small to "
              f"scale out across hosts at batch 128 a step. A larger batch per GPU amortises the all-reduce, whose "
              f"size does not grow with the batch."]
    return lines


if __name__ == "__main__":
    main()
