"""The overhead of `vae_core.callbacks.TensorBoard` on an epoch of the default model on full Fashion-MNIST, both
backends side by side in one process.

Each backend trains the default spec (784-400-400-20, Bernoulli, Adam 1e-3, batch 128) on the 60,000 training
images with the 10,000 test images as validation data, for `--epochs` epochs, twice: once without callbacks
(`plain`) and once with `TensorBoard(log_dir, images_every=5, examples=<512 test images>)` (`tensorboard`), in the
order plain, tensorboard, then the other backend. The callback's cost is timed inside it: every hook call
(`on_train_begin`, `on_epoch_end`, `on_train_end`) with `time.perf_counter`, so the epochs with image grids and
histograms (epochs 1 and 6 of the default 6) are told apart from those with the scalars alone. The overhead per
epoch at images every 5 epochs is (4 x a scalar-only epoch's hook time + 1 x a later image epoch's) / 5, over the
plain run's median epoch ("seconds" of its history, which the trainer measures without the callbacks); the first
image epoch's extra (opening the files, TF's first eager calls), once per run, is reported apart. The wall
time of each whole `fit` is reported too, as a cross-check (noisier: a shared machine).

    .venv/bin/python -m scripts.bench_tensorboard                 # 6 epochs a run, prints a Markdown table
    .venv/bin/python -m scripts.bench_tensorboard --limit 10000   # quick check on a subset
    .venv/bin/python -m scripts.bench_tensorboard --out           # also writes scripts/results/bench_tensorboard.*
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scripts.benchlib import cpu_name, fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
TARGET = 0.05  # at most this share of an epoch, with images every 5 epochs
IMAGES_EVERY = 5
EXAMPLES = 512


def timed_tensorboard(log_dir: Path, examples: np.ndarray):
    """A TensorBoard callback that times each of its hook calls: .times is [(hook, epoch, seconds, images)]."""
    from vae_core.callbacks import TensorBoard

    class Timed(TensorBoard):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.times: list[tuple[str, int | None, float, bool]] = []

        def _timed(self, hook, epoch, call):
            imaged, start = self._imaged, time.perf_counter()
            call()
            self.times.append((hook, epoch, time.perf_counter() - start, self._imaged != imaged))

        def on_train_begin(self, logs=None):
            self._timed("on_train_begin", None, lambda: super(Timed, self).on_train_begin(logs))

        def on_epoch_end(self, epoch, logs=None):
            self._timed("on_epoch_end", epoch + 1, lambda: super(Timed, self).on_epoch_end(epoch, logs))

        def on_train_end(self, logs=None):
            self._timed("on_train_end", None, lambda: super(Timed, self).on_train_end(logs))

    return Timed(log_dir, images_every=IMAGES_EVERY, examples=examples)


def run_backend(backend: str, x_train, x_test, epochs: int, log_root: Path) -> dict:
    import vae_core

    spec = vae_core.VAESpec(input_dim=784, image_shape=(28, 28))
    config = vae_core.TrainConfig(epochs=epochs, batch_size=128)
    examples = x_test[np.sort(np.random.default_rng(0).choice(len(x_test), EXAMPLES, replace=False))]
    out: dict = {}
    for variant in ("plain", "tensorboard"):
        callback = timed_tensorboard(log_root / backend, examples) if variant == "tensorboard" else None
        model = vae_core.build(backend, spec, seed=0)
        start = time.perf_counter()
        history = vae_core.fit(model, x_train, x_test, config, progress=False,
                               callbacks=[callback] if callback else None)
        out[variant] = {"fit_s": time.perf_counter() - start, "epoch_s": history["seconds"],
                        "val_loss": history["val_loss"]}
        if callback is not None:
            out[variant]["hooks"] = callback.times
        print(f"{backend} {variant}: fit {out[variant]['fit_s']:.1f} s, epochs "
              f"{', '.join(f'{s:.2f}' for s in history['seconds'])}", file=sys.stderr)
    out["summary"] = summarize(out)
    return out


def summarize(out: dict) -> dict:
    """The overhead of one backend's runs ({"plain": ..., "tensorboard": ...}, as `run_backend` records them)."""
    hooks = out["tensorboard"]["hooks"]
    scalar_only = [s for hook, _, s, images in hooks if hook == "on_epoch_end" and not images]
    with_images = {e: s for hook, e, s, images in hooks if hook == "on_epoch_end" and images}  # {epoch: s}
    first = with_images.pop(1)  # epoch 1: also opens the files, and TF's first eager calls of the model
    # the trainer's epoch seconds leave the callbacks out, so both runs' steady epochs measure the same work: their
    # median is the epoch (robust to a busy spell of the shared machine in one of the runs)
    steady = [s for variant in ("plain", "tensorboard") for s in out[variant]["epoch_s"][1:]]
    epoch = statistics.median(steady)
    scalar, image = statistics.median(scalar_only), statistics.median(with_images.values())
    per_epoch = ((IMAGES_EVERY - 1) * scalar + image) / IMAGES_EVERY
    once = first - image + sum(s for hook, _, s, _ in hooks if hook != "on_epoch_end")
    return {"epoch_s": epoch, "scalar_hook_s": scalar, "image_hook_s": image, "first_image_hook_s": first,
            "hook_per_epoch_s": per_epoch, "overhead": per_epoch / epoch, "once_per_run_s": once,
            "fastest_epoch_s": min(steady), "overhead_vs_fastest": per_epoch / min(steady),
            "fit_ratio": out["tensorboard"]["fit_s"] / out["plain"]["fit_s"],
            "same_history": out["plain"]["val_loss"] == out["tensorboard"]["val_loss"]}


def markdown(meta: dict, results: dict) -> str:
    rendered = [f"Summary recomputed from its JSON by `{meta['rendered']}` (no new measurement).", ""] \
        if meta.get("rendered") else []
    lines = ["# TensorBoard callback overhead", "", f"Command: `{meta['command']}`", "", *rendered,
             f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, shared with other work (load average "
             f"{meta['load_before']:.1f} before the run, {meta['load_after']:.1f} after); {meta['versions']}. "
             f"Fashion-MNIST, {meta['n_train']} training images, {meta['n_test']} test images as validation data, "
             f"default spec (784-400-400-20, Bernoulli), batch 128, {meta['epochs']} epochs a run; "
             f"`TensorBoard(images_every={IMAGES_EVERY}, examples=<{EXAMPLES} test images>)`: 64 samples and 8 "
             f"reconstructions as image grids, 21 latent histograms. Run {meta['date']}.", "",
             "| backend | epoch, median (s) | hook, scalars only | hook, with images + histograms | "
             "hook per epoch at images every 5 | **overhead** | against the fastest epoch | once per run (s) | "
             "whole fit, tensorboard / plain | same history |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for backend, r in results.items():
        s = r["summary"]
        lines.append(f"| {backend} | {s['epoch_s']:.2f} | {s['scalar_hook_s'] * 1e3:.1f} ms | "
                     f"{s['image_hook_s'] * 1e3:.0f} ms | {s['hook_per_epoch_s'] * 1e3:.1f} ms | "
                     f"**{s['overhead']:.2%}** | {s['overhead_vs_fastest']:.2%} ({s['fastest_epoch_s']:.2f} s) | "
                     f"{s['once_per_run_s']:.2f} | {s['fit_ratio']:.3f} | "
                     f"{'yes' if s['same_history'] else 'no'} |")
    worst = max(r["summary"]["overhead_vs_fastest"] for r in results.values())
    lines += ["", f"Target: at most {TARGET:.0%} of an epoch with images every {IMAGES_EVERY} epochs: "
                  f"**{worst:.2%}** at most, against the fastest steady epoch ({'met' if worst <= TARGET else 'NOT met'}).",
              "",
              "The hook times are measured inside the callback (`time.perf_counter` around each hook call); the "
              "epoch is the median of the trainer's own `seconds` over the steady epochs (all but the first) of "
              "both runs, which leave the callbacks out, so both measure the same work. Epoch times per run (s): "
              + "; ".join(f"{b} {v}: " + ", ".join(f"{x:.2f}" for x in r[v]["epoch_s"])
                          for b, r in results.items() for v in ("plain", "tensorboard")) + ".",
              "",
              "The hook times per epoch (ms, epoch: time, * with images and histograms): "
              + "; ".join(f"{b}: " + ", ".join(f"{e}: {t * 1e3:.1f}{'*' if im else ''}"
                                              for h, e, t, im in r["tensorboard"]["hooks"] if h == "on_epoch_end")
                          for b, r in results.items()) + ".",
              "",
              "An image epoch draws 64 "
              "samples and reconstructs 8 examples (two PNG grids) and encodes 512 examples for 21 histograms; a "
              "scalar epoch writes 8 scalars into two files and flushes them. The image hook is the median of the "
              "image epochs after the first; `once per run`: what epoch 1's image hook took beyond that (opening the "
              "files, TF's first eager calls of the model), with on_train_begin and on_train_end. The whole-fit "
              "ratio includes the "
              "first epoch's compile and the shared machine's noise; `same history`: the two runs' validation "
              "losses are equal, bit for bit (the callback draws no noise from the framework).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6, help="at least 6: image grids at epochs 1 and 6")
    parser.add_argument("--limit", type=int, default=None, help="the first N training images only (a quick check)")
    parser.add_argument("--out", action="store_true", help="write scripts/results/bench_tensorboard.{md,json}")
    parser.add_argument("--render", action="store_true",
                        help="rewrite bench_tensorboard.md from the committed bench_tensorboard.json, running nothing")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((RESULTS / "bench_tensorboard.json").read_text())
        results = saved.pop("results")
        saved["rendered"] = ".venv/bin/python -m scripts.bench_tensorboard --render"
        for r in results.values():
            r["summary"] = summarize(r)
        (RESULTS / "bench_tensorboard.json").write_text(json.dumps({**saved, "results": results}, indent=1) + "\n")
        (RESULTS / "bench_tensorboard.md").write_text(markdown(saved, results))
        print(markdown(saved, results))
        return
    load_before = os.getloadavg()[0]
    x_train, x_test = fashion_mnist(args.limit)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for backend in ("torch", "tf"):
            results[backend] = run_backend(backend, x_train, x_test, args.epochs, Path(folder))
    import keras  # after the runs: the backends import their frameworks in the order they need
    import tensorboard
    import torch

    meta = {"command": shlex.join([".venv/bin/python", "-m", "scripts.bench_tensorboard", *sys.argv[1:]]),
            "cpu": cpu_name(), "cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0],
            "versions": f"torch {torch.__version__}, Keras {keras.__version__}, tensorboard {tensorboard.__version__}",
            "n_train": len(x_train), "n_test": len(x_test), "epochs": args.epochs,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    text = markdown(meta, results)
    print(text)
    if args.out:
        (RESULTS / "bench_tensorboard.md").write_text(text)
        (RESULTS / "bench_tensorboard.json").write_text(json.dumps({**meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
