"""Epoch time by thread setting, on an idle CPU and beside one CPU-bound process, per backend.

Each setting trains the default model (784-400-400-20, batch 128) on the first --limit Fashion-MNIST images for
--epochs epochs in its own process (so environment settings such as OMP_WAIT_POLICY apply from the start), and
reports the steady epoch (the median of the epochs after the first); with --rounds, every setting runs that many
times, interleaved, and the table shows the median round. "busy" runs one `while True: pass` process
beside it for the whole run. Settings:

- torch: `auto` (fit's default: the CPUs other processes leave idle, followed each second), `threads=1`,
  `threads=2` (torch's own default on this 2-core machine, the default before `auto`), and `threads=2` with
  OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning at barriers: shows how much of the loss is
  spinning and how much is the thread count);
- tf: its own default pools (fit's default), `threads=1`, `threads=2` (set before TensorFlow starts).

    .venv/bin/python -m scripts.bench_threads --rounds 3    # writes scripts/results/bench_threads.{md,json}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.benchlib import cpu_name, fashion_mnist, write_results

ROOT = Path(__file__).resolve().parents[1]
# (backend, label, threads (None: fit's default), extra environment)
SETTINGS = [
    ("torch", "auto (default)", None, {}),
    ("torch", "threads=1", 1, {}),
    ("torch", "threads=2 (torch's own default, before)", 2, {}),
    ("torch", "threads=2, OMP_WAIT_POLICY=PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("tf", "default (TensorFlow's pools)", None, {}),
    ("tf", "threads=1", 1, {}),
    ("tf", "threads=2", 2, {}),
]
BUSY = "while True: pass"


def worker(backend: str, threads: int | None, epochs: int, limit: int) -> dict:
    from vae_core import TrainConfig, VAESpec, build, fit
    from vae_core.callbacks import Callback
    from vae_core.registry import backend_module

    if threads is not None and backend == "tf":
        backend_module("tf").device.set_threads(threads)  # before TensorFlow starts
    x_train, _ = fashion_mnist(limit, dtype="uint8")
    seconds: list[float] = []

    class EpochTimes(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model = build(backend, VAESpec(), seed=0)
    fit(model, x_train, None, TrainConfig(epochs=epochs, batch_size=128), progress=False, device="cpu",
        callbacks=[EpochTimes()], threads=threads)
    return {"epochs": seconds, "images": len(x_train)}


def idle_ab(rounds: int, limit: int) -> dict:
    """torch on an idle machine, auto against threads=2 in one process: one epoch each, alternating, so that the
    process-to-process spread of the main table (up to 10% between two runs of the same setting) drops out."""
    from vae_core import TrainConfig, VAESpec, build, fit

    x_train, _ = fashion_mnist(limit, dtype="uint8")
    model = build("torch", VAESpec(), seed=0)
    fit(model, x_train, None, TrainConfig(epochs=1), progress=False, device="cpu", threads=2)  # warm-up
    seconds: dict[str, list[float]] = {"threads=2": [], "auto": []}
    for r in range(rounds):
        for name in ("threads=2", "auto") if r % 2 == 0 else ("auto", "threads=2"):
            start = time.perf_counter()
            fit(model, x_train, None, TrainConfig(epochs=1), progress=False, device="cpu",
                threads=2 if name == "threads=2" else None)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def run_setting(backend: str, threads: int | None, env: dict, busy: bool, args) -> dict:
    competitor = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        proc = subprocess.run([sys.executable, "-m", "scripts.bench_threads", "--worker", backend,
                               "none" if threads is None else str(threads), str(args.epochs), str(args.limit)],
                              cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
                              capture_output=True, text=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{backend} threads={threads} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["steady"] = statistics.median(result["epochs"][1:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=20000, help="training images of Fashion-MNIST")
    parser.add_argument("--backends", default="torch,tf")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every setting this many times, interleaved; report each one's median round")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--idle-ab", type=int, metavar="ROUNDS",
                        help="only torch's idle A/B in one process (auto against threads=2, alternating epochs); "
                             "writes bench_threads_idle_ab.md")
    args = parser.parse_args()
    if args.idle_ab:
        seconds = idle_ab(args.idle_ab, args.limit)
        medians = {k: statistics.median(v) for k, v in seconds.items()}
        paired = statistics.median(a / b for a, b in zip(seconds["threads=2"], seconds["auto"]))
        lines = ["# Threads: torch idle, auto against threads=2 in one process", "",
                 f"CPU: {cpu_name()}. Command: `.venv/bin/python -m scripts.bench_threads --idle-ab {args.idle_ab} "
                 f"--limit {args.limit}`. One epoch each of the default model on the first {args.limit:,} "
                 f"Fashion-MNIST images, alternating, after a warm-up epoch. The machine's speed drifts over a "
                 f"run, so the result is the median of the paired ratios (round r's threads=2 epoch over its auto "
                 f"epoch): auto's idle speed is **{paired:.2f}x** threads=2's.", "",
                 "| setting | epochs (s) | median (s) |", "|---|---|---:|"]
        for name, values in seconds.items():
            lines.append(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {medians[name]:.2f} |")
        write_results(args.out, "bench_threads_idle_ab", lines)
        return
    if args.worker:
        backend, threads, epochs, limit = args.worker
        print(json.dumps(worker(backend, None if threads == "none" else int(threads), int(epochs), int(limit))))
        return

    settings = [st for st in SETTINGS if st[0] in args.backends.split(",")]
    runs: dict[tuple[int, str], list[dict]] = {}
    for r in range(args.rounds):  # interleaved: a slow minute of the shared machine touches every setting alike
        for i, (backend, label, threads, env) in enumerate(settings):
            for load in ("idle", "busy"):
                result = run_setting(backend, threads, env, load == "busy", args)
                runs.setdefault((i, load), []).append(result)
                print(f"round {r + 1}: {backend:5s} {label:42s} {load}: steady epoch {result['steady']:.2f} s "
                      f"({', '.join(f'{s:.2f}' for s in result['epochs'])})", file=sys.stderr)
    rows = []
    for i, (backend, label, threads, env) in enumerate(settings):
        row = {"backend": backend, "setting": label, "threads": threads, "env": env}
        for load in ("idle", "busy"):
            rounds = runs[(i, load)]
            row[load] = {"steady": statistics.median(x["steady"] for x in rounds), "rounds": rounds}
        rows.append(row)

    lines = ["# Threads: epoch time idle and beside one busy process", "",
             f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs. Command: `.venv/bin/python -m scripts.bench_threads "
             f"--epochs {args.epochs} --limit {args.limit} --rounds {args.rounds}`. Default model, batch 128, the first {args.limit:,} "
             f"Fashion-MNIST images; steady epoch = the median of epochs 2..{args.epochs}, then the median over {args.rounds} interleaved round(s); 'busy': one "
             f"`{BUSY}` process beside the run. Ratios are within one backend: the busy epoch against the busy epoch of "
             f"threads=1 (the target: the default within 1.3x), idle speed against the backend's default before this "
             f"change (torch: threads=2; tf: its default; the target: 0.95x or more).", "",
             "| backend | setting | idle epoch (s) | idle speed vs before | busy epoch (s) | busy / threads=1 busy |",
             "|---|---|---:|---:|---:|---:|"]
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        one_busy = next(r for r in mine if r["threads"] == 1)["busy"]["steady"]
        before = next(r for r in mine if r["threads"] == 2 and not r["env"]) if backend == "torch" else mine[0]
        for r in mine:
            lines.append(f"| {backend} | {r['setting']} | {r['idle']['steady']:.2f} | "
                         f"{before['idle']['steady'] / r['idle']['steady']:.2f}x speed | {r['busy']['steady']:.2f} | "
                         f"{r['busy']['steady'] / one_busy:.2f}x |")
    write_results(args.out, "bench_threads", lines, rows)


if __name__ == "__main__":
    main()
