"""Benchmark the JAX backend's `fit` against the torch and TF backends' `fit`, side by side in one run.

All three train the same model from the same initial weights (`vae_core.init_weights(spec, seed)`) on the same
data: by default the default spec (VAESpec(): 784-400-400-20 MLP, Bernoulli), Adam 1e-3,
TrainConfig(batch_size=128, epochs=--epochs), full Fashion-MNIST (60,000 train / 10,000 test, uint8 pixels, which
`fit` reads as x / 255), the test set as `val` (validated every epoch; not part of the timed training pass).
`--arch conv` trains the conv VAE instead (VAESpec(architecture="conv", image_shape=(28, 28),
conv_channels=(32, 64), hidden_dims=(256,))). Each backend uses `fit`'s defaults: threads=None (each framework's
own CPU pool), fp32, no checkpoints, its own noise.

Each backend trains in its own child process, so peak RSS is per backend and one framework's threads or memory
do not slow another; the backends are interleaved over --rounds rounds (torch, tf, jax, torch, tf, jax, ...) so
that a shared machine's noise hits every backend alike. Round r uses seed --seed + r (initial weights, data order,
noise) for every backend. Reported per backend:

- images/s: the steady state, train images / the mean time of the epochs after the first (`fit`'s
  history["seconds"]: the training pass alone), median over the rounds;
- first-epoch overhead: epoch 1's time minus a steady epoch (tracing and XLA compilation for TF and JAX; for
  JAX, a `lax.scan` block of 32 steps and a single step, for what is left of an epoch), median over rounds;
  and the child's start-up: importing the framework, loading the data and building the model;
- peak RSS of the child process (and, on CUDA, the peak device memory the framework reports: torch's
  max_memory_allocated, JAX's peak_bytes_in_use; JAX preallocates most of the GPU, which RSS does not show);
- the test loss after the same epochs: single-sample negative ELBO of the test set with the backend's own
  `evaluate(model, x_test, seed=0)`, mean over rounds;
- JAX/TF and JAX/torch images/s ratios, each taken within a round (the two ran back to back), median over rounds.
The issue's target: JAX's images/s >= TF's (ratio JAX/TF >= 1).

On the CPU, `fit` runs a JAX conv model a step per compiled call: XLA:CPU runs convolutions inside a loop (a
`lax.scan` block) about 10x slower than the same step compiled alone (jax-ml/jax#12868). Even so, XLA:CPU's
convolutions are slower than TF's (oneDNN) and torch's: scripts/results/bench_jax_conv.md.

A backend whose framework is not installed (TensorFlow on the GPU machine) is reported as absent; a child that
fails is reported with its error and the others still run.

    .venv/bin/python -m scripts.bench_jax --limit 6000 --epochs 2          # quick check, prints the table
    .venv/bin/python -m scripts.bench_jax --epochs 4 --rounds 5 --out      # full run: scripts/results/bench_jax.*
    .venv/bin/python -m scripts.bench_jax --arch conv --limit 6000 --epochs 3 --rounds 2 --out   # the conv model
    python -m scripts.bench_jax --device cuda --backends torch,jax --out-dir "$OUT/bench"   # GPU (no TF there)
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.benchlib import cpu_name, fashion_mnist, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
BACKENDS = ("torch", "tf", "jax")
FRAMEWORK = {"torch": "torch", "tf": "tensorflow", "jax": "jax"}  # the module whose absence makes a backend absent
VERSIONS = ("jax", "jaxlib", "flax", "optax", "torch", "tensorflow", "keras", "numpy")
CONV = dict(architecture="conv", image_shape=(28, 28), conv_channels=(32, 64), hidden_dims=(256,))
TARGET_JAX_OVER_TF = 1.0
T0 = time.perf_counter()  # the child's start (this module is imported first)


def _spec(arch: str):
    from vae_core import VAESpec

    return VAESpec(**CONV) if arch == "conv" else VAESpec()


# ----------------------------------------------------------------------------------------------- child
def _device_memory(backend: str, device: str) -> tuple[float | None, str]:
    """Peak device memory in MiB on CUDA (None on the CPU) and what measured it."""
    if device == "cpu":
        return None, ""
    if backend == "torch":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated"
    if backend == "jax":
        from backends.jax.device import resolve_device
        stats = resolve_device(device).memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return (None if peak is None else peak / 2**20), "jax memory_stats peak_bytes_in_use"
    return None, ""


def _device_name(backend: str, device: str) -> str:
    if device == "cpu":
        return "cpu"
    if backend == "torch":
        import torch
        return torch.cuda.get_device_name(0)
    if backend == "jax":
        from backends.jax.device import resolve_device
        return resolve_device(device).device_kind
    return device


def child(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vae_core import TrainConfig, build, fit
    from vae_core.registry import backend_module

    mod = backend_module(args.child)  # imports the framework
    imported = time.perf_counter()
    x_train, x_test = fashion_mnist(args.limit, dtype="uint8")
    spec = _spec(args.arch)
    model = build(args.child, spec, seed=args.seed)
    ready = time.perf_counter()
    start = time.perf_counter()
    history = fit(model, x_train, x_test, TrainConfig(batch_size=128, epochs=args.epochs, seed=args.seed),
                  progress=False, device=args.device)
    fit_s = time.perf_counter() - start
    test = mod.evaluate(model, x_test, seed=0, device=args.device)
    peak_dev, dev_measure = _device_memory(args.child, args.device)
    seconds = history["seconds"]
    steady = statistics.fmean(seconds[1:] or seconds)
    out = {"backend": args.child, "seed": args.seed, "n_train": len(x_train), "n_test": len(x_test),
           "epoch_seconds": seconds, "steady_s_per_epoch": steady, "images_per_s": len(x_train) / steady,
           "first_epoch_overhead_s": seconds[0] - steady, "fit_wall_s": fit_s,
           "import_s": imported - T0, "startup_s": ready - T0, "test": test,
           "train_loss": history["train_loss"], "val_loss": history["val_loss"],
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_device_mib": peak_dev, "device_memory_measure": dev_measure,
           "device": _device_name(args.child, args.device), "num_params": spec.num_params}
    if args.child == "torch":
        import torch
        out["threads"] = torch.get_num_threads()
    return out


# ----------------------------------------------------------------------------------------------- parent
def versions() -> dict[str, str | None]:
    """Installed versions, by module name (without importing the frameworks): TensorFlow's distribution may be
    tensorflow, tensorflow-cpu, tf-nightly, ...; None where it is not installed."""
    dists = importlib.metadata.packages_distributions()
    out = {}
    for name in VERSIONS:
        out[name] = None
        for dist in dists.get(name, [name]):
            try:
                out[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                pass
    out["python"] = platform.python_version()
    return out


def installed(backend: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK[backend]) is not None


def summarize(runs: list[dict]) -> dict:
    """One backend over its rounds: median steady s/epoch (and its images/s), median first-epoch overhead, max peak
    memory, mean test loss; every round's numbers too."""
    steady = [r["steady_s_per_epoch"] for r in runs]
    s = statistics.median(steady)
    dev = [r["peak_device_mib"] for r in runs if r["peak_device_mib"] is not None]
    loss = [r["test"]["loss"] for r in runs]
    return {"status": "ok", "rounds": len(runs), "steady_s_per_epoch": s, "images_per_s": runs[0]["n_train"] / s,
            "round_images_per_s": [r["images_per_s"] for r in runs],
            "first_epoch_overhead_s": statistics.median(r["first_epoch_overhead_s"] for r in runs),
            "startup_s": statistics.median(r["startup_s"] for r in runs),
            "import_s": statistics.median(r["import_s"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "peak_device_mib": max(dev) if dev else None,
            "test_loss": statistics.fmean(loss), "test_loss_per_round": loss,
            "epoch_seconds": [r["epoch_seconds"] for r in runs], "device": runs[0]["device"]}


def ratios(runs: dict[str, list[dict | None]], num: str, den: str) -> dict | None:
    """images/s of `num` over `den`, each round's (both ran in it), and their median."""
    pairs = [(a, b) for a, b in zip(runs.get(num, []), runs.get(den, [])) if a and b]
    if not pairs:
        return None
    per_round = [a["images_per_s"] / b["images_per_s"] for a, b in pairs]
    return {"median_round": statistics.median(per_round), "per_round": per_round}


def markdown(cmd: str, meta: dict, rows: dict, rat: dict) -> list[str]:
    arch = "conv 28x28, channels (32, 64), hidden (256,)" if meta["arch"] == "conv" else "MLP 784-400-400-20"
    v = meta["versions"]
    lines = ["# JAX backend benchmark: `fit` of torch, TF and JAX", "", f"Command: `{cmd}`", "",
             f"Machine: {meta['cpu']} ({meta['cpus']} CPUs usable), device {meta['device']}; {meta['date']}. "
             f"Versions: jax {v['jax']} (jaxlib {v['jaxlib']}), flax {v['flax']}, optax {v['optax']}, "
             f"torch {v['torch']}, tensorflow {v['tensorflow']} (keras {v['keras']}), Python {v['python']}.", "",
             f"Fashion-MNIST, {meta['n_train']} train / {meta['n_test']} test images; {arch}, Bernoulli, "
             f"{meta['num_params']:,} parameters; batch 128, Adam 1e-3, {meta['epochs']} epochs; "
             f"{meta['rounds']} round(s), backends interleaved, seeds {meta['seeds']}; threads=None.", "",
             "| backend | images/s (steady) | s/epoch | images/s per round | first-epoch overhead (s) | "
             "start-up (s) | peak RSS (MiB) | peak device mem (MiB) | test loss | epoch seconds per round |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        if r["status"] != "ok":
            lines.append(f"| {name} | {r['status']}: {r.get('reason', '')} | | | | | | | | |")
            continue
        dev = "" if r["peak_device_mib"] is None else f"{r['peak_device_mib']:.0f}"
        times = "; ".join(", ".join(f"{t:.2f}" for t in s) for s in r["epoch_seconds"])
        lines.append(f"| {name} | {r['images_per_s']:,.0f} | {r['steady_s_per_epoch']:.2f} | "
                     f"{', '.join(f'{x:,.0f}' for x in r['round_images_per_s'])} | "
                     f"{r['first_epoch_overhead_s']:.2f} | {r['startup_s']:.1f} | {r['peak_rss_mib']:.0f} | {dev} | "
                     f"{r['test_loss']:.2f} | {times} |")
    lines.append("")
    for key, label in (("jax/tf", "JAX / TF"), ("jax/torch", "JAX / torch")):
        r = rat.get(key)
        if r is None:
            lines.append(f"{label} images/s: n/a (not both measured).")
            continue
        met = "met" if r["median_round"] >= TARGET_JAX_OVER_TF else "NOT met"
        target = f" (target >= {TARGET_JAX_OVER_TF:.1f}x: **{met}**)" if key == "jax/tf" else ""
        lines.append(f"{label} images/s: **{r['median_round']:.2f}x**{target}; per round "
                     f"{', '.join(f'{x:.2f}x' for x in r['per_round'])}.")
    lines += ["", "Steady = the epochs after the first (`fit`'s history[\"seconds\"]: the training pass, without the "
              "validation pass); a backend's row takes its median round. First-epoch overhead: epoch 1 minus a steady "
              "epoch (tracing/compilation). Start-up: the child from its start to a built model (framework import, "
              "data, build). Test loss: the backend's own `evaluate(model, x_test, seed=0)`, mean over rounds; the "
              "backends draw different noise, so their losses differ by seed-to-seed variation as well. Ratios: "
              "images/s within the same round, median over rounds.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per backend (>= 2: the first holds the compile)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N images (and test on max(1000, N/6)): a quick check")
    p.add_argument("--rounds", type=int, default=1, help="run every backend this many times, interleaved")
    p.add_argument("--seed", type=int, default=0, help="seed of round 1; round r uses seed + r - 1")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of torch,tf,jax")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where every backend trains")
    p.add_argument("--arch", choices=["mlp", "conv"], default="mlp", help="the default MLP or the conv VAE")
    p.add_argument("--out", nargs="?", const="", default=None, metavar="NAME",
                   help="write NAME.md and NAME.json into --out-dir (default NAME: bench_jax, with _conv and _cuda "
                        "for those runs)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where --out writes (default scripts/results); giving it implies --out")
    p.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2 or args.rounds < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs must be >= 2 (the first epoch holds the compile), --rounds and --limit >= 1")
    if args.child:
        args.child_out.write_text(json.dumps(child(args)))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends) or len(set(backends)) != len(backends):
        p.error(f"--backends must be a comma-separated subset of {','.join(BACKENDS)}; got {args.backends!r}")

    argv = sys.argv[1:] if argv is None else argv
    python = os.path.relpath(sys.executable) if sys.executable.startswith(str(ROOT) + os.sep) else sys.executable
    cmd = shlex.join([python, "-m", "scripts.bench_jax", *argv])
    absent = {b: f"{FRAMEWORK[b]} is not installed" for b in backends if not installed(b)}
    present = [b for b in backends if b not in absent]
    seeds = [args.seed + r for r in range(args.rounds)]
    runs: dict[str, list[dict | None]] = {b: [] for b in present}
    errors: dict[str, str] = {}
    passthrough = ["--epochs", str(args.epochs), "--device", args.device, "--arch", args.arch] \
        + ([] if args.limit is None else ["--limit", str(args.limit)])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    for b, why in absent.items():
        print(f"== {b}: absent ({why})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(seeds):
            for b in present:
                out = Path(tmp) / f"{b}-{seed}.json"
                print(f"== {b} (round {i + 1}/{args.rounds}, seed {seed}) ...", flush=True)
                proc = subprocess.run([sys.executable, "-m", "scripts.bench_jax", "--child", b, "--child-out",
                                       str(out), "--seed", str(seed), *passthrough], cwd=ROOT, env=env)
                if proc.returncode != 0 or not out.exists():
                    errors[b] = f"child exited with status {proc.returncode} (its stderr is above)"
                    print(f"   FAILED: {errors[b]}", flush=True)
                    runs[b].append(None)
                    continue
                r = json.loads(out.read_text())
                runs[b].append(r)
                epochs = [round(s, 2) for s in r["epoch_seconds"]]
                print(f"   {r['images_per_s']:,.0f} images/s (steady), epochs {epochs} s, first-epoch overhead "
                      f"{r['first_epoch_overhead_s']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, test loss "
                      f"{r['test']['loss']:.2f}", flush=True)

    rows: dict[str, dict] = {}
    for b in backends:
        ok = [r for r in runs.get(b, []) if r]
        if b in absent:
            rows[b] = {"status": "absent", "reason": absent[b]}
        elif not ok:
            rows[b] = {"status": "failed", "reason": errors.get(b, "")}
        else:
            rows[b] = summarize(ok)
            if len(ok) < args.rounds:
                rows[b]["failed_rounds"] = args.rounds - len(ok)
    rat = {"jax/tf": ratios(runs, "jax", "tf"), "jax/torch": ratios(runs, "jax", "torch")}
    first = next((r for rs in runs.values() for r in rs if r), None)
    spec = _spec(args.arch)
    meta = {"command": cmd, "cpu": cpu_name(), "cpus": len(os.sched_getaffinity(0)), "device": args.device,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "versions": versions(), "arch": args.arch,
            "spec": spec.to_dict(), "num_params": spec.num_params, "epochs": args.epochs, "rounds": args.rounds,
            "seeds": seeds, "batch_size": 128, "limit": args.limit,
            "n_train": first["n_train"] if first else None, "n_test": first["n_test"] if first else None}
    lines = markdown(cmd, meta, rows, rat)
    met = rat["jax/tf"]["median_round"] >= TARGET_JAX_OVER_TF if rat["jax/tf"] else None
    payload = {**meta, "results": rows, "ratios": rat, "target": {"jax_over_tf_images_per_s": TARGET_JAX_OVER_TF,
               "met": met}, "raw": runs}
    if args.out is not None or args.out_dir is not None:
        name = args.out or ("bench_jax" + ("_conv" if args.arch == "conv" else "")
                            + ("_cuda" if args.device == "cuda" else ""))
        out_dir = args.out_dir or RESULTS
        write_results(out_dir, name, lines, payload)
        print(f"wrote {out_dir / name}.md and .json")
    else:
        print("\n".join(lines))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
