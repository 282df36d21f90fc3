"""Keras' own `compile`/`fit` on a `vae_core.build("tf")` model against `vae_core.fit`, epoch times side by side.

Every variant trains the default model (784-400-400-20, Bernoulli, Adam 1e-3, batch 128, no validation) on the
60,000 Fashion-MNIST training images (float32 pixels in [0, 1]) for the same number of epochs, starting from the
same `vae_core.init_weights`:

- `vae_core.fit`: `vae_core.fit(model, x_train, config=TrainConfig(epochs=E, batch_size=128))`, with its own compile
  (XLA, blocks of 32 batches per compiled call). Epoch times from its history's "seconds".
- `keras <data> <settings>`: `model.compile(optimizer=keras.optimizers.Adam(1e-3)[, options])`, then one
  `model.fit(..., epochs=E)`, the Keras way, on <data>: `array`, the NumPy array (`fit(x, batch_size=128)`, shuffled
  by Keras), or `dataset`, `tf.data.Dataset.from_tensor_slices(x).batch(128).prefetch(tf.data.AUTOTUNE)`.
  <settings>: `before`, jit_compile=False, steps_per_execution=1 passed explicitly (Keras' own defaults on a CPU);
  `xla`, jit_compile=True alone (what `VAE.compile()` gave before it picked steps_per_execution: XLA, one batch per
  call); `after`, no options (`VAE.compile`'s defaults: XLA and 32 batches per compiled call). Epoch times from a
  callback's on_epoch_begin/on_epoch_end.

Interleaved by run, in rounds: each round runs every variant once, one after another (A, B, C, ..., then A, B, C,
... again), each in a fresh process of its own, so a busy spell of a shared machine falls on neighbouring runs, and
a round's ratios pair runs made minutes apart. Not by epoch: pausing a process between its epochs while the others
ran one each stalled Keras' NumPy-array pipeline for 10-20 s in the first epoch after a pause (a measured
artifact of the pausing, not seen in any uninterrupted run). Reported per variant: the first epoch (tracing and
XLA compile) apart from the steady ones (the others), and the mean steady epoch over `vae_core.fit`'s in the same
round; the headline is the median of those per-round ratios.

    .venv/bin/python -m scripts.bench_keras_fit                     # 3 epochs, 1 round, prints a Markdown table
    .venv/bin/python -m scripts.bench_keras_fit --limit 10000       # quick check on a subset
    .venv/bin/python -m scripts.bench_keras_fit --rounds 2 --out    # also writes scripts/results/bench_keras_fit.*
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.benchlib import cpu_name, fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
TARGET_RATIO = 1.25  # Keras' own fit with the defaults: at most this times vae_core.fit's steady epoch
BATCH = 128
SETTINGS = {"before": dict(jit_compile=False, steps_per_execution=1), "xla": dict(jit_compile=True), "after": {}}
VARIANTS = ("vae_core.fit", *(f"keras {data} {name}" for data in ("array", "dataset") for name in SETTINGS))


# ----------------------------------------------------------------------------------------------- one variant
def _ours(x, epochs: int, seed: int) -> dict:
    """`vae_core.fit`; its history's "seconds" are the epoch times."""
    import vae_core

    model = vae_core.build("tf", vae_core.VAESpec(), seed=seed)
    history = vae_core.fit(model, x, config=vae_core.TrainConfig(epochs=epochs, batch_size=BATCH, seed=seed),
                           progress=False)
    return {"seconds": history["seconds"], "train_loss": history["train_loss"], "settings": None}


def _keras(variant: str, x, epochs: int, seed: int) -> dict:
    """Keras' own compile and one fit of `epochs` epochs, timed by a callback."""
    import keras
    import tensorflow as tf

    import vae_core

    _, data, name = variant.split()
    model = vae_core.build("tf", vae_core.VAESpec(), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **SETTINGS[name])

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    if data == "array":
        history = model.fit(x, epochs=epochs, batch_size=BATCH, callbacks=[timer], verbose=0).history
    else:
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(BATCH).prefetch(tf.data.AUTOTUNE)
        history = model.fit(dataset, epochs=epochs, callbacks=[timer], verbose=0).history
    return {"seconds": timer.seconds, "train_loss": history["loss"],
            "settings": {"jit_compile": bool(model.jit_compile), "steps_per_execution": int(model.steps_per_execution)}}


def child(variant: str, epochs: int, limit: int | None, seed: int, out: Path) -> None:
    """One run of one variant, in this (fresh) process; the result as JSON into `out`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import backends.tf  # noqa: F401  (forces Keras onto TensorFlow)

    keras.utils.set_random_seed(seed)  # Keras' shuffle of the array
    x_train, _ = fashion_mnist(limit, dtype="float32")
    result = _ours(x_train, epochs, seed) if variant == "vae_core.fit" else _keras(variant, x_train, epochs, seed)
    out.write_text(json.dumps({"seconds": [float(t) for t in result["seconds"]],
                               "train_loss": [float(v) for v in result["train_loss"]],
                               "settings": result["settings"], "n_train": len(x_train), "seed": seed,
                               "tensorflow": tf.__version__, "keras": keras.__version__}))


# ----------------------------------------------------------------------------------------------- parent
def _steady(seconds: list[float]) -> float:
    return statistics.fmean(seconds[1:] or seconds)


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per variant: the first epoch and the mean steady epoch of each round, and each round's ratio of the mean
    steady epoch to vae_core.fit's in the same round, with their median (the headline)."""
    ours = results["vae_core.fit"]
    rows = {}
    for name, runs in results.items():
        ratios = [_steady(r["seconds"]) / _steady(o["seconds"]) for r, o in zip(runs, ours)]
        rows[name] = {"settings": runs[0]["settings"], "epoch_seconds": [r["seconds"] for r in runs],
                      "median_first_epoch_s": statistics.median(r["seconds"][0] for r in runs),
                      "steady_s_per_epoch": [_steady(r["seconds"]) for r in runs],
                      "median_steady_s_per_epoch": statistics.median(_steady(r["seconds"]) for r in runs),
                      "ratio_per_round": ratios, "ratio": statistics.median(ratios),
                      "final_train_loss": [r["train_loss"][-1] for r in runs]}
    return rows


def markdown(cmd: str, meta: dict, rows: dict) -> str:
    lines = ["# Keras' own fit against vae_core.fit", "", f"Command: `{cmd}`", "",
             f"Machine: {meta['machine']}, shared with other work (load average {meta['load_average_before']:.1f} "
             f"before the run, {meta['load_average_after']:.1f} after); TensorFlow {meta['tensorflow']}, Keras "
             f"{meta['keras']}. Fashion-MNIST, {meta['n_train']} float32 training images, no validation, "
             f"{meta['epochs']} epochs, batch {BATCH}, default spec (784-400-400-20, Bernoulli), Adam 1e-3; "
             f"{meta['rounds']} rounds, each running every variant once, one after another, each run in a "
             f"fresh process. "
             f"Run {meta['date']}.", "",
             "| variant | jit_compile, steps_per_execution | steady s/epoch (per round) | × vae_core.fit (median "
             "round) | × per round | first epoch s (per round) | epoch times per round (s) | final train loss |",
             "|---|---|---:|---:|---|---:|---|---|"]
    for name, s in rows.items():
        settings = "its own: XLA, 32 batches per call" if s["settings"] is None else \
            f"{s['settings']['jit_compile']}, {s['settings']['steps_per_execution']}"
        times = "; ".join(", ".join(f"{t:.2f}" for t in seconds) for seconds in s["epoch_seconds"])
        lines.append(
            f"| {name} | {settings} | {', '.join(f'{v:.2f}' for v in s['steady_s_per_epoch'])} | "
            f"**{s['ratio']:.2f}×** | {', '.join(f'{v:.2f}×' for v in s['ratio_per_round'])} | "
            f"{', '.join(f'{t[0]:.2f}' for t in s['epoch_seconds'])} | {times} | "
            f"{', '.join(f'{v:.2f}' for v in s['final_train_loss'])} |")
    after = {name: rows[name]["ratio"] for name in rows if name.endswith(" after")}
    verdict = "met" if all(v <= TARGET_RATIO for v in after.values()) else "not met"
    lines += ["", f"Target: Keras' own fit with `VAE.compile`'s defaults at most {TARGET_RATIO}× the steady epoch "
                  f"of `vae_core.fit`: " + ", ".join(f"{name} **{v:.2f}×**" for name, v in after.items()) +
              f" ({verdict}).", "",
              "Steady = the epochs after the first, which holds the tracing and the XLA compile. A round's ratio "
              "divides the variant's mean steady epoch by `vae_core.fit`'s in the same round. `before` passes "
              "jit_compile=False, steps_per_execution=1 explicitly; `xla` passes jit_compile=True alone, which keeps "
              "steps_per_execution=1 (what `VAE.compile()` gave before this change); `after` passes neither. "
              "Final train loss: the last epoch's mean over its examples (Keras' history, `vae_core.fit`'s "
              "train_loss); `xla` and `after` of the same data train bit for bit alike (the same steps), the "
              "others differ in data order or noise, so they agree to seed variation only.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per variant (>= 2: the first one holds the compile)")
    p.add_argument("--rounds", type=int, default=1, help="rounds of every variant, interleaved by run")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick check)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from {', '.join(VARIANTS)} (vae_core.fit is always run)")
    p.add_argument("--out", nargs="?", const="bench_keras_fit", default=None, metavar="NAME",
                   help="write scripts/results/NAME.md and NAME.json (default NAME: bench_keras_fit)")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)  # one run, in a fresh process
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.epochs, args.limit, args.seed, args.child_out)
        return 0
    if args.epochs < 2 or args.rounds < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs must be >= 2, --rounds and --limit >= 1")
    variants = ["vae_core.fit"] + [v.strip() for v in args.variants.split(",") if v.strip() not in ("", "vae_core.fit")]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")

    cmd = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "scripts.bench_keras_fit",
                                              *(sys.argv[1:] if argv is None else argv)])
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for variant in variants:
                out = Path(tmp) / f"{variant.replace(' ', '_')}-{round_}.json"
                command = [sys.executable, "-m", "scripts.bench_keras_fit", "--child", variant, "--child-out",
                           str(out), "--epochs", str(args.epochs), "--seed", str(round_)]
                print(f"round {round_ + 1}/{args.rounds}: {variant} ...", flush=True)
                load = os.getloadavg()[0]
                subprocess.run(command + (["--limit", str(args.limit)] if args.limit else []), check=True, cwd=ROOT)
                results[variant].append({**json.loads(out.read_text()), "load_average_at_start": load})
                print(f"  epochs {[round(t, 2) for t in results[variant][-1]['seconds']]}", flush=True)
    rows = summarize(results)
    first = results["vae_core.fit"][0]
    meta = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs", "tensorflow": first["tensorflow"],
            "keras": first["keras"], "epochs": args.epochs, "rounds": args.rounds, "limit": args.limit,
            "n_train": results["vae_core.fit"][0]["n_train"], "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
    text = markdown(cmd, meta, rows)
    print(text)
    if args.out:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text(text)
        after = {name: rows[name]["ratio"] for name in rows if name.endswith(" after")}
        (RESULTS / f"{args.out}.json").write_text(json.dumps(
            {"command": cmd, **meta, "results": rows, "raw": results, "target_ratio": TARGET_RATIO,
             "met": all(v <= TARGET_RATIO for v in after.values())}, indent=1))
        print(f"wrote {RESULTS / args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
