"""Images per second of `vae_core.fit` on full Fashion-MNIST, by the kind of data it is given, per backend.

Every variant trains the default model (784-400-400-20, Bernoulli, Adam 1e-3, batch 128, no validation) on the
60,000 Fashion-MNIST training images for `--epochs` epochs; its speed is 60,000 over its steady epoch (the epochs
after the first, which holds the start-up: tracing, XLA compiles, worker processes, the count of a stream). The
variants, in the order they run in one process per backend and round:

- `array`: the uint8 array (N, 28, 28) in memory, the reference (run first and last; the reference is their mean);
- `torchvision, 0 workers` / `2 workers`: `torchvision.datasets.FashionMNIST(root)`, a map-style dataset of
  (PIL image, label) items, read by index in the trainer's order (`fit(data_workers=0 | 2)`);
- `DataLoader stream, 2 workers`: `DataLoader(that dataset, batch_size=128, shuffle=True, num_workers=2)` with a
  collate that stacks the images as uint8, given as an iterable of batches (one pass per epoch, its order);
- `ImageFolder PNGs, 0 workers` / `2 workers`: the 60,000 images as PNG files in class folders (written once under
  `--cache`), `torchvision.datasets.ImageFolder(root, loader=<decode to a uint8 array>)`, read by index;
- `tf.data stream`: `tf.data.Dataset.from_tensor_slices(uint8 images).shuffle(60000).batch(128).prefetch(2)`;
- TF only, `Keras fit, tf.data`: Keras' own `model.compile(optimizer=Adam(1e-3))` and `model.fit` on
  `from_tensor_slices(float32 images).batch(128)` (no vae_core.fit; `VAE.compile`'s defaults).

The ratio of each variant is its images/s over the array's in the same process. The profile says where the time
of reading PNG files goes: cProfile over `ItemRows.take` of 4,096 ImageFolder items, in the training process.

    .venv/bin/python -m scripts.bench_data                              # 2 epochs, both backends, prints the table
    .venv/bin/python -m scripts.bench_data --epochs 3 --out             # also writes scripts/results/bench_data.*
    .venv/bin/python -m scripts.bench_data --backends tf --variants array "tf.data stream"
    .venv/bin/python -m scripts.bench_data --epochs 4 --variants array "torchvision, 0 workers" --out --tag torchvision
"""
from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import os
import pstats
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scripts.benchlib import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
BATCH = 128
TARGET = 0.8  # a torchvision dataset of in-memory images: at least this times the array's images/s
VARIANTS = ("array", "torchvision, 0 workers", "torchvision, 2 workers", "DataLoader stream, 2 workers",
            "ImageFolder PNGs, 0 workers", "ImageFolder PNGs, 2 workers", "tf.data stream", "Keras fit, tf.data")
FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def decode_png(path: str) -> np.ndarray:
    """ImageFolder's loader: the PNG's pixels as a uint8 (H, W) array (its default converts to RGB)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def stack_uint8(batch: list) -> np.ndarray:
    """A DataLoader's collate: the (PIL image, label) items' images as one uint8 (b, 28, 28) array."""
    return np.stack([np.asarray(image) for image, _ in batch])


def prepare(cache: Path) -> Path:
    """torchvision's FashionMNIST/raw files and the PNG folder under `cache` (made once); returns the PNG root."""
    raw = cache / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in FASHION.glob("*-ubyte.gz"):
        if not (raw / gz.stem).exists():
            (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    pngs = cache / "png"
    if not (pngs / "done").exists():
        from PIL import Image

        from vae_core.data import load_dataset

        data = load_dataset("fashion-mnist", dtype="uint8")
        images, labels = data.x_train.reshape(-1, 28, 28), data.y_train
        for label in np.unique(labels):
            (pngs / f"class_{label}").mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(pngs / f"class_{label}" / f"{i:05d}.png")
        (pngs / "done").touch()
    return pngs


def _epoch_seconds(backend: str, variant: str, cache: Path, epochs: int) -> list[float]:
    """The epoch times of one variant, in this process."""
    import torch
    import torchvision

    from vae_core import TrainConfig, VAESpec, build, fit
    from vae_core.data import load_dataset

    spec, config = VAESpec(image_shape=(28, 28)), TrainConfig(epochs=epochs, batch_size=BATCH, seed=0)
    x = load_dataset("fashion-mnist", dtype="uint8").x_train.reshape(-1, 28, 28)
    if variant == "Keras fit, tf.data":
        return _keras_fit_seconds(build(backend, spec, seed=0), x, epochs)
    workers = 2 if variant.endswith("2 workers") else 0
    if variant == "array":
        train = x
    elif variant.startswith("torchvision"):
        train = torchvision.datasets.FashionMNIST(str(cache), train=True, download=False)
    elif variant.startswith("DataLoader"):
        dataset = torchvision.datasets.FashionMNIST(str(cache), train=True, download=False)
        train = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                            collate_fn=stack_uint8, persistent_workers=True)
        workers = 0  # the loader's own
    elif variant.startswith("ImageFolder"):
        train = torchvision.datasets.ImageFolder(str(cache / "png"), loader=decode_png)
    elif variant == "tf.data stream":
        import tensorflow as tf

        train = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=0).batch(BATCH).prefetch(2)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    history = fit(build(backend, spec, seed=0), train, None, config, progress=False, data_workers=workers)
    return history["seconds"]


def _keras_fit_seconds(model, x: np.ndarray, epochs: int) -> list[float]:
    """Keras' own compile and fit, one epoch per call; each epoch timed from on_epoch_begin to on_epoch_end."""
    import keras
    import tensorflow as tf

    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = tf.data.Dataset.from_tensor_slices(x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0))
    model.fit(data.batch(BATCH).prefetch(tf.data.AUTOTUNE), epochs=epochs, callbacks=[Timer()], verbose=0)
    return seconds


def _profile(cache: Path) -> str:
    """Where reading PNG files goes: the top functions of ItemRows.take over 4,096 ImageFolder items."""
    import torchvision

    from vae_core import VAESpec
    from vae_core.data.items import ItemRows

    rows = ItemRows(torchvision.datasets.ImageFolder(str(cache / "png"), loader=decode_png), VAESpec(image_shape=(28, 28)))
    positions = np.random.default_rng(0).permutation(len(rows))[:4096]
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for lo in range(0, len(positions), BATCH):
        rows.take(positions[lo:lo + BATCH])
    profile.disable()
    per_item = (time.perf_counter() - start) / len(positions) * 1e6
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    table = "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    return f"{per_item:.1f} µs per item (under the profiler)\n\n```\n{table}\n```"


def child(args: argparse.Namespace) -> None:
    """One backend, one round: every variant in turn, the array first and last; JSON on stdout."""
    out = {}
    variants = [v for v in args.variants if v != "array"]
    for variant in ["array", *variants, "array"]:
        if variant == "Keras fit, tf.data" and args.backend != "tf":
            continue
        seconds = _epoch_seconds(args.backend, variant, Path(args.cache), args.epochs)
        out.setdefault(variant, []).append(seconds)
        print(f"{args.backend} {variant}: {[round(s, 2) for s in seconds]}", file=sys.stderr, flush=True)
    print(json.dumps(out))


def _run(backend: str, args: argparse.Namespace) -> dict[str, list[list[float]]]:
    command = [sys.executable, "-m", "scripts.bench_data", "--child", "--backend", backend, "--epochs",
               str(args.epochs), "--cache", str(args.cache), "--variants", *args.variants]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(results: dict[str, list[dict[str, list[list[float]]]]]) -> tuple[list[str], dict]:
    lines = ["| backend | variant | steady s/epoch (per round) | images/s (median round) | × array (per round) | "
             "first epoch s |", "|---|---|---|---:|---|---|"]
    summary: dict = {}
    for backend, rounds in results.items():
        for variant in dict.fromkeys(v for r in rounds for v in r):
            steady, ratios, first = [], [], []
            for r in rounds:
                array = np.mean([np.mean(s[1:]) for s in r["array"]])
                s = np.mean([np.mean(e[1:]) for e in r[variant]])
                steady.append(s)
                ratios.append(array / s)
                first.append(r[variant][0][0])
            median = float(np.median([60000 / s for s in steady]))
            summary[f"{backend} {variant}"] = {"steady_s": steady, "ratio": ratios, "images_per_s": median}
            lines.append(f"| {backend} | {variant} | {', '.join(f'{s:.2f}' for s in steady)} | {median:,.0f} | "
                         f"{', '.join(f'{q:.2f}×' for q in ratios)} | {', '.join(f'{f:.2f}' for f in first)} |")
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per variant (the first is start-up)")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per backend")
    parser.add_argument("--backends", nargs="+", default=["torch", "tf"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vae_bench_data",
                        help="where torchvision's raw files and the 60,000 PNGs are written (once)")
    parser.add_argument("--out", action="store_true", help="write scripts/results/bench_data.{md,json}")
    parser.add_argument("--tag", default="", help="with --out: write bench_data_TAG.{md,json} instead (a subset "
                                                  "of the variants, kept beside the full run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is start-up, the others are measured")
    if args.child:
        child(args)
        return
    prepare(args.cache)
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    results = {b: [_run(b, args) for _ in range(args.rounds)] for b in args.backends}
    lines, summary = _table(results)
    profile = _profile(args.cache)
    command = "python -m scripts.bench_data " + shlex.join(sys.argv[1:])
    tv = [summary[k]["ratio"] for k in summary if k.endswith("torchvision, 0 workers")]
    verdict = ", ".join(f"{k.split()[0]} {np.median(summary[k]['ratio']):.2f}×" for k in summary
                        if k.endswith("torchvision, 0 workers"))
    met = all(np.median(r) >= TARGET for r in tv)
    text = "\n".join([
        "# Data in: images/s of `vae_core.fit` by the kind of data", "",
        f"Command: `.venv/bin/{command}`", "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, shared (load average {load:.1f} before the run). "
        f"Full Fashion-MNIST (60,000 training images, uint8), default spec (784-400-400-20, Bernoulli), batch "
        f"{BATCH}, {args.epochs} epochs per variant, {args.rounds} round(s); one process per backend and round, "
        f"variants in turn. Run {started}.", "",
        *lines, "",
        f"Target: a torchvision dataset of in-memory images (0 workers) at ≥ {TARGET}× the array's images/s: "
        f"{verdict} ({'met' if met else 'not met'}).", "",
        "Steady = the epochs after the first. × array = the array's steady epoch (mean of its two runs in that "
        "process) over the variant's.", "",
        "## Where reading PNG files goes", "", profile, ""])
    print(text)
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        name = f"bench_data_{args.tag}" if args.tag else "bench_data"
        (RESULTS / f"{name}.md").write_text(text)
        (RESULTS / f"{name}.json").write_text(json.dumps({"command": command, "results": results,
                                                            "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
