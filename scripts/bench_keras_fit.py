"""Keras' own `compile`/`fit` on a `vae_core.build("tf")` model against `vae_core.fit`, epoch times side by side.

Every variant trains the default model (784-400-400-20, Bernoulli, Adam 1e-3, batch 128, no validation) on the
60,000 Fashion-MNIST training images (float32 pixels in [0, 1]) for the same number of epochs, starting from the
same `vae_core.init_weights`:

- `vae_core.fit`: `vae_core.fit(model, x_train, config=TrainConfig(epochs=E, batch_size=128))`, with its own compile
  (XLA, blocks of 32 batches per compiled call). Epoch times from its history's "seconds".
- `keras <data> <settings>`: `model.compile(optimizer=keras.optimizers.Adam(1e-3)[, options])`, then `model.fit`,
  the Keras way (one call per epoch, see below), on <data>: `array`, the NumPy array (`fit(x, batch_size=128)`,
  shuffled by Keras), or `dataset`, `tf.data.Dataset.from_tensor_slices(x).batch(128).prefetch(tf.data.AUTOTUNE)`.
  <settings>: `before`, jit_compile=False, steps_per_execution=1 passed explicitly (Keras' own defaults on a CPU);
  `xla`, jit_compile=True alone (what `VAE.compile()` gave before it picked steps_per_execution: XLA, one batch per
  call); `after`, no options (`VAE.compile`'s defaults: XLA and 32 batches per compiled call). Epoch times from a
  callback's on_epoch_begin/on_epoch_end.

Interleaved by epoch, in one process per round: epoch 1 of every variant, one after another, then epoch 2 of
every variant, and so on, so that a busy spell of a shared machine hits neighbouring epochs of all variants alike
(the machine this ran on is shared, and its speed changed by 2x within minutes). A Keras variant runs each epoch as
one `fit(..., epochs=e + 1, initial_epoch=e)` call (its train function is kept between calls; the epoch timer
starts in on_epoch_begin, after the call's setup). `vae_core.fit` runs once, in a thread that waits between its
epochs: it makes one Keras `fit` call per epoch, and the wait is taken off the time of the epoch it falls in. (A
design that paused whole Keras `fit` calls between epochs, in threads or in processes, stalled Keras' pipelines,
mostly the NumPy array's, for 5-23 s in the first epochs after a pause: an artifact of the pausing.) Each round
starts a fresh process. Reported per variant: the first epoch (tracing and XLA compile) apart from the steady ones
(the others), and the steady time over `vae_core.fit`'s, per round (mean steady epochs) and per epoch (epoch e
over `vae_core.fit`'s epoch e, measured seconds apart); the headline is the median over the rounds.

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
import threading
import time
from pathlib import Path

from scripts.benchlib import cpu_name, fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
TARGET_RATIO = 1.25  # Keras' own fit with the defaults: at most this times vae_core.fit's steady epoch
BATCH = 128
SETTINGS = {"before": dict(jit_compile=False, steps_per_execution=1), "xla": dict(jit_compile=True), "after": {}}
VARIANTS = ("vae_core.fit", *(f"keras {data} {name}" for data in ("array", "dataset") for name in SETTINGS))


# ----------------------------------------------------------------------------------------------- one round
class _Turns:
    """`vae_core.fit`'s turns: its thread works from `give()` until it calls `wait()` or ends."""

    def __init__(self) -> None:
        self.go, self.done, self.finished = threading.Event(), threading.Event(), False

    def start(self) -> None:  # the thread: wait for the first turn
        self.go.wait()
        self.go.clear()

    def wait(self) -> float:  # the thread: end this turn, wait for the next; the seconds waited
        start = time.perf_counter()
        self.done.set()
        self.go.wait()
        self.go.clear()
        return time.perf_counter() - start

    def end(self) -> None:
        self.finished = True
        self.done.set()

    def give(self) -> None:  # the conductor: one turn
        if not self.finished:
            self.go.set()
            self.done.wait()
            self.done.clear()


def _ours(x, epochs: int, seed: int, turns: _Turns, result: dict) -> None:
    """`vae_core.fit` itself, in a thread. Its Trainer makes one Keras `model.fit` call per epoch (no step
    checkpoints): a turn ends as it makes the next one, and the wait is taken off that epoch's time."""
    try:
        turns.start()
        import vae_core

        model = vae_core.build("tf", vae_core.VAESpec(), seed=seed)
        keras_fit, waits = model.fit, []

        def fit_in_turns(*args, **kwargs):
            waits.append(turns.wait() if waits else 0.0)
            return keras_fit(*args, **kwargs)

        model.fit = fit_in_turns  # this instance only
        history = vae_core.fit(model, x, config=vae_core.TrainConfig(epochs=epochs, batch_size=BATCH, seed=seed),
                               progress=False)
        result.update(seconds=[s - w for s, w in zip(history["seconds"], waits, strict=True)],
                      train_loss=history["train_loss"], settings=None)
    except BaseException as e:  # noqa: BLE001  (raised again by the conductor)
        result["error"] = e
    finally:
        turns.end()


class _Keras:
    """A Keras variant: `compile` once, then one `fit` call per epoch."""

    def __init__(self, variant: str, x, seed: int):
        self.variant, self.x, self.seed = variant, x, seed
        self.model, self.seconds, self.train_loss = None, [], []

    def epoch(self, epoch: int) -> None:
        import keras
        import tensorflow as tf

        import vae_core

        _, data, name = self.variant.split()
        if self.model is None:
            self.model = vae_core.build("tf", vae_core.VAESpec(), seed=self.seed)
            self.model.compile(optimizer=keras.optimizers.Adam(1e-3), **SETTINGS[name])
            self.dataset = tf.data.Dataset.from_tensor_slices(self.x).batch(BATCH).prefetch(tf.data.AUTOTUNE)
        seconds = self.seconds

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(time.perf_counter() - self.start)

        options = dict(epochs=epoch + 1, initial_epoch=epoch, callbacks=[Timer()], verbose=0)
        if data == "array":
            history = self.model.fit(self.x, batch_size=BATCH, **options)
        else:
            history = self.model.fit(self.dataset, **options)
        self.train_loss.append(history.history["loss"][-1])

    def result(self) -> dict:
        return {"seconds": self.seconds, "train_loss": self.train_loss,
                "settings": {"jit_compile": bool(self.model.jit_compile),
                             "steps_per_execution": int(self.model.steps_per_execution)}}


def one_round(variants: list[str], epochs: int, limit: int | None, seed: int, out: Path) -> None:
    """Every variant for `epochs` epochs in this process, interleaved by epoch; the results as JSON into `out`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import backends.tf  # noqa: F401  (forces Keras onto TensorFlow)

    keras.utils.set_random_seed(seed)  # Keras' shuffle of the array
    x_train, _ = fashion_mnist(limit, dtype="float32")
    turns, ours = _Turns(), {}
    thread = threading.Thread(target=_ours, args=(x_train, epochs, seed, turns, ours), daemon=True)
    thread.start()
    runs = {v: _Keras(v, x_train, seed) for v in variants if v != "vae_core.fit"}
    for epoch in range(epochs):
        for variant in variants:
            if variant == "vae_core.fit":
                turns.give()
            else:
                runs[variant].epoch(epoch)
            print(f"  epoch {epoch + 1}: {variant}", flush=True)
    thread.join()
    if "error" in ours:
        raise RuntimeError("vae_core.fit failed") from ours["error"]
    results = {v: ours if v == "vae_core.fit" else runs[v].result() for v in variants}
    out.write_text(json.dumps({v: {"seconds": [float(t) for t in r["seconds"]],
                                   "train_loss": [float(t) for t in r["train_loss"]], "settings": r["settings"],
                                   "n_train": len(x_train), "seed": seed, "tensorflow": tf.__version__,
                                   "keras": keras.__version__} for v, r in results.items()}))


# ----------------------------------------------------------------------------------------------- parent
def _steady(seconds: list[float]) -> float:
    return statistics.fmean(seconds[1:] or seconds)


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per variant: the first epoch and the mean steady epoch of each round, and the ratios to vae_core.fit in the
    same round: of the mean steady epochs (one per round; their median is the headline), and of each steady epoch
    to vae_core.fit's epoch of the same number (the nearest pairs in time)."""
    ours = results["vae_core.fit"]
    rows = {}
    for name, runs in results.items():
        ratios = [_steady(r["seconds"]) / _steady(o["seconds"]) for r, o in zip(runs, ours)]
        epoch_ratios = [a / b for r, o in zip(runs, ours) for a, b in zip(r["seconds"][1:], o["seconds"][1:])]
        rows[name] = {"settings": runs[0]["settings"], "epoch_seconds": [r["seconds"] for r in runs],
                      "median_first_epoch_s": statistics.median(r["seconds"][0] for r in runs),
                      "steady_s_per_epoch": [_steady(r["seconds"]) for r in runs],
                      "median_steady_s_per_epoch": statistics.median(_steady(r["seconds"]) for r in runs),
                      "ratio_per_round": ratios, "ratio": statistics.median(ratios),
                      "ratio_per_epoch": epoch_ratios, "median_epoch_ratio": statistics.median(epoch_ratios),
                      "final_train_loss": [r["train_loss"][-1] for r in runs]}
    return rows


def markdown(cmd: str, meta: dict, rows: dict) -> str:
    lines = ["# Keras' own fit against vae_core.fit", "", f"Command: `{cmd}`", "",
             f"Machine: {meta['machine']}, shared with other work (load average {meta['load_average_before']:.1f} "
             f"before the run, {meta['load_average_after']:.1f} after); TensorFlow {meta['tensorflow']}, Keras "
             f"{meta['keras']}. Fashion-MNIST, {meta['n_train']} float32 training images, no validation, "
             f"{meta['epochs']} epochs, batch {BATCH}, default spec (784-400-400-20, Bernoulli), Adam 1e-3; "
             f"{meta['rounds']} round(s), each a fresh process running every variant, interleaved by epoch. "
             f"Run {meta['date']}.", "",
             "| variant | jit_compile, steps_per_execution | steady s/epoch (per round) | × vae_core.fit (median "
             "round) | × per round | × per steady epoch | first epoch s (per round) | epoch times per round (s) | "
             "final train loss |",
             "|---|---|---:|---:|---|---|---:|---|---|"]
    for name, s in rows.items():
        settings = "its own: XLA, 32 batches per call" if s["settings"] is None else \
            f"{s['settings']['jit_compile']}, {s['settings']['steps_per_execution']}"
        times = "; ".join(", ".join(f"{t:.2f}" for t in seconds) for seconds in s["epoch_seconds"])
        lines.append(
            f"| {name} | {settings} | {', '.join(f'{v:.2f}' for v in s['steady_s_per_epoch'])} | "
            f"**{s['ratio']:.2f}×** | {', '.join(f'{v:.2f}×' for v in s['ratio_per_round'])} | "
            f"{', '.join(f'{v:.2f}×' for v in s['ratio_per_epoch'])} | "
            f"{', '.join(f'{t[0]:.2f}' for t in s['epoch_seconds'])} | {times} | "
            f"{', '.join(f'{v:.2f}' for v in s['final_train_loss'])} |")
    after = {name: rows[name]["ratio"] for name in rows if name.endswith(" after")}
    verdict = "met" if all(v <= TARGET_RATIO for v in after.values()) else "not met"
    lines += ["", f"Target: Keras' own fit with `VAE.compile`'s defaults at most {TARGET_RATIO}× the steady epoch "
                  f"of `vae_core.fit`: " + ", ".join(f"{name} **{v:.2f}×**" for name, v in after.items()) +
              f" ({verdict}).", "",
              "Steady = the epochs after the first, which holds the tracing and the XLA compile. A round's ratio "
              "divides the variant's mean steady epoch by `vae_core.fit`'s in the same round; a per-epoch ratio "
              "divides its epoch e by `vae_core.fit`'s epoch e, run seconds apart. `before` passes "
              "jit_compile=False, steps_per_execution=1 explicitly; `xla` passes jit_compile=True alone, which keeps "
              "steps_per_execution=1 (what `VAE.compile()` gave before this change); `after` passes neither. "
              "Final train loss: the last epoch's mean over its examples (Keras' history, `vae_core.fit`'s "
              "train_loss); `xla` and `after` of the same data train bit for bit alike (the same steps), the "
              "others differ in data order or noise, so they agree to seed variation only.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per variant (>= 2: the first one holds the compile)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds, each a fresh process running every variant, interleaved by epoch")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick check)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from {', '.join(VARIANTS)} (vae_core.fit is always run)")
    p.add_argument("--out", nargs="?", const="bench_keras_fit", default=None, metavar="NAME",
                   help="write scripts/results/NAME.md and NAME.json (default NAME: bench_keras_fit)")
    p.add_argument("--round-out", type=Path, help=argparse.SUPPRESS)  # a child: one round
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2 or args.rounds < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs must be >= 2, --rounds and --limit >= 1")
    variants = ["vae_core.fit"] + [v.strip() for v in args.variants.split(",") if v.strip() not in ("", "vae_core.fit")]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if args.round_out:
        one_round(variants, args.epochs, args.limit, args.seed, args.round_out)
        return 0

    cmd = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "scripts.bench_keras_fit",
                                              *(sys.argv[1:] if argv is None else argv)])
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            out = Path(tmp) / f"round-{round_}.json"
            command = [sys.executable, "-m", "scripts.bench_keras_fit", "--round-out", str(out), "--epochs",
                       str(args.epochs), "--seed", str(round_), "--variants", ",".join(variants)]
            print(f"round {round_ + 1}/{args.rounds} ...", flush=True)
            load = os.getloadavg()[0]
            done = subprocess.run(command + (["--limit", str(args.limit)] if args.limit else []), cwd=ROOT)
            if not out.exists():  # a run that wrote its result and crashed on its way out still counts
                raise RuntimeError(f"round {round_ + 1} failed with exit status {done.returncode}")
            for variant, result in json.loads(out.read_text()).items():
                results[variant].append({**result, "load_average_at_start": load, "exit_status": done.returncode})
                print(f"  {variant}: epochs {[round(t, 2) for t in result['seconds']]}", flush=True)
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
