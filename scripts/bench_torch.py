"""Benchmark the torch backend's training loop against a loop in the seed's style (section 3.1/3.4).

Trains the default model (784-400-400-20, Bernoulli, Adam 1e-3, batch 128) on full Fashion-MNIST for
--epochs epochs per variant, each in its own subprocess so peak memory is measured per variant:

- reference: the seed's loop (scripts/seed_style.py): a DataLoader over torchvision-MNIST-style items
  (uint8 -> PIL image -> ToTensor -> flatten, per image), the batch moved to the device each step,
  `.item()` on every step's losses, torch.optim.Adam with its defaults;
- reference-minimal: the same loop, with each item converted straight from uint8 to a float tensor (no PIL);
  shown so that the cost of the seed's per-image PIL conversion is visible on its own;
- fp32, bf16: `backends.torch.fit(..., precision=...)` (bf16: autocast; loss and Adam in float32);
- fp32-compile, bf16-compile: the same with `compile=True` (torch.compile; on the CPU it needs a C++ compiler).
Within a round all variants start from the same initial weights and see the same batches and the same noise
(ours with `shared_noise=True`, which costs one NumPy draw per epoch; the references replay those rows), so
their test losses differ only by how each loop computes: the loss formula, Adam's kernel, bf16 rounding.
Round r uses seed --seed + r (its own initial weights, batch order and noise), so --rounds also averages the
test-loss differences over that many seeds.

Reports seconds/epoch and images/second in the steady state (epochs after the first; the first epoch's extra
time, torch.compile's included, in its own column), peak memory (CPU: the worker's peak RSS; CUDA: the peak
of torch.cuda.max_memory_allocated), and the test loss after training (`backends.torch.evaluate`, the same
fixed noise for all), with ratios against both references. Writes a Markdown table and JSON under --out.

    .venv/bin/python -m scripts.bench_torch                 # 3 epochs, full Fashion-MNIST
    .venv/bin/python -m scripts.bench_torch --epochs 2 --limit 6000 --variants reference,fp32   # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scripts.benchlib import cpu_name

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("reference", "reference-minimal", "fp32", "fp32-subnormals", "bf16", "fp32-compile", "bf16-compile")
TITLES = {"reference": "reference (seed style, PIL per image)", "reference-minimal": "reference, minimal conversion",
          "fp32": "ours fp32", "fp32-subnormals": "ours fp32, subnormals not flushed (before)", "bf16": "ours bf16 (autocast)", "fp32-compile": "ours fp32, torch.compile",
          "bf16-compile": "ours bf16, torch.compile"}
# Targets of the issue, on the CPU: images/s ratio vs the reference and |test loss - reference's| in nats.
TARGETS = {"fp32": (1.5, 0.5), "bf16": (2.5, 1.0), "fp32-compile": (1.5, 0.5), "bf16-compile": (2.5, 1.0)}


# ---------------------------------------------------------------- data


def load_data(limit: int | None):
    from vae_core.data import load_dataset

    try:
        data, note = load_dataset("fashion-mnist"), ""
    except FileNotFoundError as e:
        note = (f"Fashion-MNIST is not available ({e}); FELL BACK to the offline 'mnist-5k' "
                f"(4,000 train images): the timings are NOT comparable with a Fashion-MNIST run")
        print(f"WARNING: {note}", file=sys.stderr)
        data = load_dataset("mnist-5k")
    x_train, x_test = data.x_train, data.x_test
    if limit is not None:
        x_train, x_test = x_train[:limit], x_test[:limit]
    return data.name, x_train, x_test, note


# ---------------------------------------------------------------- the seed-style reference loop


def run_reference(x_train: np.ndarray, spec, args, device, minimal: bool):
    """The seed-style loop (scripts/seed_style.py) from our initial weights, batch order and noise."""
    import torch
    from torch.utils.data import DataLoader

    from scripts import seed_style
    from vae_core import init_weights
    from vae_core.train.schedule import epoch_noise, epoch_permutation

    torch.manual_seed(args.seed)
    n = len(x_train)
    model = seed_style.SeedVAE(spec.input_dim, spec.hidden_dims, spec.latent_dim)
    model.load_neutral(init_weights(spec, args.seed)).to(device)  # the same initial weights as our variants
    model.noise = seed_style.ReplayNoise(n, lambda epoch: epoch_noise(args.seed, epoch, n, spec.latent_dim))
    images = np.round(x_train * 255.0).astype(np.uint8)  # the raw pixels, as the seed's dataset holds them
    dataset = (seed_style.MinimalImages if minimal else seed_style.SeedStyleImages)(images)
    order = seed_style.FixedOrder(n, lambda epoch: epoch_permutation(args.seed, epoch, n))
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=order, num_workers=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    _sync(device)
    start = time.perf_counter()
    epoch_seconds = []
    for _ in range(args.epochs):
        epoch_start = time.perf_counter()
        seed_style.train_epoch(model, loader, optimizer, device)
        _sync(device)
        epoch_seconds.append(time.perf_counter() - epoch_start)
    return time.perf_counter() - start, epoch_seconds, model.neutral_weights()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- one variant per process


def worker(args) -> dict:
    import torch

    from backends.torch import build_model, evaluate, fit, weights
    from backends.torch.device import resolve_device
    from vae_core import TrainConfig, VAESpec

    device = resolve_device(args.device)
    dataset, x_train, x_test, note = load_data(args.limit)
    spec = VAESpec(input_dim=x_train.shape[1])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.worker.startswith("reference"):
        seconds, epoch_seconds, trained = run_reference(x_train, spec, args, device,
                                                        minimal=args.worker == "reference-minimal")
        model = weights.import_weights(build_model(spec, seed=args.seed), trained)
    else:
        model = build_model(spec, seed=args.seed)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
        precision, _, compiled = args.worker.partition("-")
        if compiled == "subnormals":  # what fit did before it flushed subnormal floats to zero
            import contextlib

            import backends.torch.train
            backends.torch.train.flush_denormals, compiled = contextlib.nullcontext, ""
        _sync(device)
        start = time.perf_counter()
        history = fit(model, x_train, None, config, shared_noise=True, device=args.device, precision=precision,
                      compile=bool(compiled), progress=False)
        _sync(device)
        seconds, epoch_seconds = time.perf_counter() - start, history["seconds"]
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process"
    test = evaluate(model, x_test, seed=0, device=args.device)
    n = len(x_train)
    steady = epoch_seconds[1:]  # epochs after the first (main requires --epochs >= 2)
    per_epoch = sum(steady) / len(steady)
    return {"variant": args.worker, "dataset": dataset, "dataset_note": note, "n_train": n, "n_test": len(x_test),
            "epochs": args.epochs, "train_seconds": seconds, "epoch_seconds": epoch_seconds,
            "seconds_per_epoch": per_epoch, "first_epoch_overhead": epoch_seconds[0] - per_epoch,
            "images_per_second": n / per_epoch, "peak_memory_mib": peak, "memory_measure": kind,
            "test_loss": test["loss"], "test_recon": test["recon"], "test_kl": test["kl"],
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "seed": args.seed,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


# ---------------------------------------------------------------- report


def median_run(runs: list[dict]) -> dict:
    """One variant over its rounds (one seed each): the timings of the run with the median time per epoch,
    every round's time, and the test loss, recon and KL of every round (in round order) and their means."""
    ordered = sorted(runs, key=lambda r: r["seconds_per_epoch"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    del chosen["seed"]
    chosen["rounds_seconds_per_epoch"] = [r["seconds_per_epoch"] for r in runs]
    chosen["peak_memory_mib"] = max(r["peak_memory_mib"] for r in runs)
    chosen["seeds"] = [r["seed"] for r in runs]
    for key, per_round in (("test_loss", "test_losses"), ("test_recon", "test_recons"), ("test_kl", "test_kls")):
        chosen[per_round] = [r[key] for r in runs]
        chosen[key] = float(np.mean(chosen[per_round]))
    return chosen


def report(results: list[dict], args, command: str) -> tuple[str, dict]:
    refs = {r["variant"]: r for r in results if r["variant"].startswith("reference")}
    ref, minimal = refs.get("reference"), refs.get("reference-minimal")
    for r in results:
        r["speedup_vs_reference"] = r["images_per_second"] / ref["images_per_second"] if ref else None
        r["speedup_vs_reference_minimal"] = r["images_per_second"] / minimal["images_per_second"] if minimal else None
        r["test_loss_deltas"] = [a - b for a, b in zip(r["test_losses"], ref["test_losses"])] if ref else None
        r["speedups_per_round"] = [a / b for a, b in zip(ref["rounds_seconds_per_epoch"],
                                                          r["rounds_seconds_per_epoch"])] if ref else None
        r["test_loss_minus_reference"] = float(np.mean(r["test_loss_deltas"])) if ref else None
        target = TARGETS.get(r["variant"])
        if target and ref:
            r["target"] = {"min_speedup": target[0], "max_abs_loss_delta": target[1],
                           "met": bool(r["speedup_vs_reference"] >= target[0]
                                       and abs(r["test_loss_minus_reference"]) <= target[1])}
    first = results[0]
    lines = [
        f"# torch training loop benchmark ({first['device']})", "",
        f"Command: `{command}`", "",
        f"Data: {first['dataset']}, {first['n_train']} train / {first['n_test']} test images; "
        f"{first['epochs']} epoch(s), batch {args.batch_size}, seeds {first['seeds']} (one per round: its own "
        f"initial weights, batch order and noise, the same for every variant); model 784-400-400-20 Bernoulli, "
        f"Adam 1e-3.",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU(s), torch {first['torch']} with {first['threads']} threads "
        f"(CPU capability {first.get('cpu_capability', '?')}: bf16 runs at speed only with AVX512_BF16 or AMX), "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Memory: {first['memory_measure']}. Test loss: negative ELBO per image (nats), fixed eval noise, mean "
        f"over the seeds; Δ loss: the mean over seeds of (variant - reference) on the same seed, each listed.",
        "s/epoch and images/s: the steady state (epochs after the first); first-epoch overhead: epoch 1 minus a "
        "steady epoch (torch.compile's compilation for the compiled variants). Speedups: images/s over the "
        "reference's; the targets are judged against the seed-style reference.", "",
    ]
    if first["dataset_note"]:
        lines += [f"**{first['dataset_note']}**", ""]
    if len(first.get("rounds_seconds_per_epoch", [])) > 1:
        lines += [f"Rounds: {len(first['rounds_seconds_per_epoch'])}, the variants interleaved; each row is the "
                  f"variant's median round (s/epoch of every round, and each round's speedup over the same "
                  f"round's reference, in the last columns).", ""]
    lines += ["| variant | s/epoch | images/s | speedup | vs minimal ref | first-epoch overhead (s) | "
              "peak memory (MiB) | test loss | Δ loss vs ref | Δ per seed | target | rounds (s/epoch) | "
              "speedup per round |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|"]

    def ratio(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}x"

    for r in results:
        target = r.get("target")
        verdict = "" if not target else (f"≥{target['min_speedup']}x, ±{target['max_abs_loss_delta']}: "
                                         + ("met" if target["met"] else "NOT met"))
        delta = "" if r["test_loss_minus_reference"] is None else f"{r['test_loss_minus_reference']:+.2f}"
        per_seed = ", ".join(f"{d:+.2f}" for d in r["test_loss_deltas"] or [])
        lines.append(f"| {TITLES[r['variant']]} | {r['seconds_per_epoch']:.2f} | {r['images_per_second']:,.0f} | "
                     f"{ratio(r['speedup_vs_reference'])} | {ratio(r['speedup_vs_reference_minimal'])} | "
                     f"{r['first_epoch_overhead']:.1f} | {r['peak_memory_mib']:.0f} | {r['test_loss']:.2f} | "
                     f"{delta} | {per_seed} | {verdict} | "
                     f"{', '.join(f'{v:.2f}' for v in r.get('rounds_seconds_per_epoch', []))} | "
                     f"{', '.join(f'{v:.2f}x' for v in r['speedups_per_round'] or [])} |")
    lines += ["", "Every epoch (s), the median round; last / second: whether epochs grow as training goes.", "",
              "| variant | epoch seconds | last / second |", "|---|---|---:|"]
    for r in results:
        seconds = r["epoch_seconds"]
        growth = f"{seconds[-1] / seconds[1]:.2f}" if len(seconds) > 2 else ""
        lines.append(f"| {TITLES[r['variant']]} | {', '.join(f'{v:.2f}' for v in seconds)} | {growth} |")
    payload = {"command": command, "batch_size": args.batch_size, "seed": args.seed, "cpu": cpu_name(),
               "results": results}
    return "\n".join(lines) + "\n", payload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="training epochs per variant (default 3)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--out", type=Path, default=ROOT / "scripts" / "results", help="folder for the .md and .json")
    p.add_argument("--limit", type=int, default=None, help="use only the first N train (and test) images")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="seed of the first round; round r uses seed + r")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the variants this many times, interleaved, and report each one's median epoch time "
                        "(a shared machine's noise hits every variant alike)")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.epochs < 2 or args.rounds < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs must be >= 2 (the first epoch holds torch.compile's compilation), and --rounds and "
                "--limit >= 1")

    if args.worker:
        args.result_file.write_text(json.dumps(worker(args)))
        return

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"--variants must be a comma-separated subset of {VARIANTS}; got {args.variants!r}")
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else sys.executable
    command = shlex.join([python, "-m", "scripts.bench_torch", *sys.argv[1:]])
    passthrough = ["--epochs", str(args.epochs), "--device", args.device, "--batch-size", str(args.batch_size)] \
        + ([] if args.limit is None else ["--limit", str(args.limit)])
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for variant in variants:
                result_file = Path(tmp) / f"{variant}-{round_}.json"
                print(f"== {variant} (round {round_ + 1}/{args.rounds}) ...", flush=True)
                subprocess.run([sys.executable, "-m", "scripts.bench_torch", "--worker", variant,
                                "--result-file", str(result_file), "--seed", str(args.seed + round_),
                                *passthrough], check=True, cwd=ROOT)
                r = json.loads(result_file.read_text())
                print(f"   {r['seconds_per_epoch']:.2f} s/epoch, {r['images_per_second']:,.0f} images/s, "
                      f"peak {r['peak_memory_mib']:.0f} MiB, test loss {r['test_loss']:.2f}", flush=True)
                runs[variant].append(r)
    results = [median_run(rs) for rs in runs.values()]
    text, payload = report(results, args, command)
    args.out.mkdir(parents=True, exist_ok=True)
    device = results[0]["device"].split(":")[0]
    stem = f"bench_torch_{device}" + ("" if args.limit is None else f"_limit{args.limit}")
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    print()
    print(text)
    print(f"wrote {args.out / stem}.md and .json")


if __name__ == "__main__":
    main()
