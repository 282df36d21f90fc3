"""Benchmark the TF/Keras backend against a Keras VAE written in the seed's style (section 3.2).

Both train the default model (784-400-400-20, Bernoulli, Adam 1e-3, batch 128) on full Fashion-MNIST:

- reference: the seed's Keras design -- Sequential encoder/decoder, a Sampling layer drawing tf.random.normal,
  a GradientTape `train_step`, `model.compile(Adam(1e-3))` (Keras' jit_compile="auto": no XLA on CPU) and
  `model.fit(x, validation_data=(x_test,))` -- with its defects fixed so the two optimise the same objective:
  BCE with logits summed over pixels and averaged over the batch, Mean trackers in `test_step`,
  `InputLayer(shape=)`. It starts from the same `vae_core.init_weights` as ours.
- ours: `backends.tf.fit` (XLA-compiled step, vae_core data order, validation every epoch, no checkpoints).

Each runs in its own child process (sequentially), so peak RSS is per model and one does not slow the other.
Reported: seconds per epoch, images/s in the steady state (epochs after the first), first-epoch overhead
(compile/tracing: epoch 1 time minus a steady epoch), peak RSS, and the test loss (single-sample negative ELBO
of the 10,000 test images, `backends.tf.evaluate`, seed 0) after the same number of epochs.

    .venv/bin/python -m scripts.bench_tf                  # 3 epochs, full data, prints a Markdown table
    .venv/bin/python -m scripts.bench_tf --limit 10000    # quick check on a subset
    .venv/bin/python -m scripts.bench_tf --seeds 3        # 3 rounds (seeds 0-2), interleaved; medians
    .venv/bin/python -m scripts.bench_tf --out            # also writes scripts/results/bench_tf.{md,json}
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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
TARGET_SPEEDUP, TARGET_LOSS_DELTA = 2.0, 0.5


# ----------------------------------------------------------------------------------------------- children
def _reference_model(spec, seed: int):
    """The seed's Keras VAE (3.2), loss fixed; weights set to vae_core.init_weights(spec, seed)."""
    import keras
    import tensorflow as tf
    from keras import layers

    from vae_core import init_weights

    class Sampling(layers.Layer):
        def call(self, inputs):
            mean, log_var = inputs
            epsilon = tf.random.normal(shape=tf.shape(mean))
            return mean + tf.exp(0.5 * log_var) * epsilon

    class RefVAE(keras.Model):
        def __init__(self):
            super().__init__()
            h = spec.hidden_dims
            self.encoder = keras.Sequential([layers.InputLayer(shape=(spec.input_dim,))]
                                            + [layers.Dense(w, activation="relu") for w in h], name="encoder")
            self.fc_mean = layers.Dense(spec.latent_dim, name="mean")
            self.fc_log_var = layers.Dense(spec.latent_dim, name="log_var")
            self.sampling = Sampling()
            self.decoder = keras.Sequential([layers.InputLayer(shape=(spec.latent_dim,))]
                                            + [layers.Dense(w, activation="relu") for w in reversed(h)]
                                            + [layers.Dense(spec.input_dim)], name="decoder")
            self.total_loss_tracker = keras.metrics.Mean(name="loss")
            self.recon_loss_tracker = keras.metrics.Mean(name="recon_loss")
            self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

        @property
        def metrics(self):
            return [self.total_loss_tracker, self.recon_loss_tracker, self.kl_loss_tracker]

        def encode(self, x):
            h = self.encoder(x)
            mean, log_var = self.fc_mean(h), self.fc_log_var(h)
            return mean, log_var, self.sampling([mean, log_var])

        def call(self, x, training=None):
            mean, log_var, z = self.encode(x)
            return self.decoder(z), mean, log_var

        def _elbo_terms(self, x):
            logits, mean, log_var = self(x)
            recon = tf.reduce_mean(tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), -1))
            kl = -0.5 * tf.reduce_mean(tf.reduce_sum(1 + log_var - tf.square(mean) - tf.exp(log_var), -1))
            return recon + kl, recon, kl

        def _track(self, total, recon, kl):
            self.total_loss_tracker.update_state(total)
            self.recon_loss_tracker.update_state(recon)
            self.kl_loss_tracker.update_state(kl)
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            with tf.GradientTape() as tape:
                total, recon, kl = self._elbo_terms(x)
            grads = tape.gradient(total, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            return self._track(total, recon, kl)

        def test_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            return self._track(*self._elbo_terms(x))

    model = RefVAE()
    model(tf.zeros((1, spec.input_dim)))
    w = init_weights(spec, seed)
    dense = [*model.encoder.layers, model.fc_mean, model.fc_log_var, *model.decoder.layers]
    names = [k[:-len(".kernel")] for k in spec.weight_shapes() if k.endswith(".kernel")]  # layer order
    for layer, prefix in zip(dense, names):
        layer.kernel.assign(w[prefix + ".kernel"])
        layer.bias.assign(w[prefix + ".bias"])
    return model, dense


def _run_reference(x_train, x_test, epochs: int, seed: int) -> dict:
    import keras
    import numpy as np

    import backends.tf as tfb
    from vae_core import VAESpec

    keras.utils.set_random_seed(seed)
    spec = VAESpec()
    model, dense = _reference_model(spec, seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3))

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    model.fit(x_train, epochs=epochs, batch_size=128, validation_data=(x_test,), callbacks=[timer], verbose=0)
    ours = tfb.build_model(spec, seed=seed)  # evaluate the reference's weights with the same function as ours
    names = [k[:-len(".kernel")] for k in spec.weight_shapes() if k.endswith(".kernel")]
    tfb.weights.import_weights(ours, {f"{n}.{p}": np.asarray(getattr(layer, p).numpy(), np.float32)
                                      for n, layer in zip(names, dense) for p in ("kernel", "bias")})
    return {"seconds": timer.seconds, "test": tfb.evaluate(ours, x_test, seed=0)}


def _run_ours(x_train, x_test, epochs: int, seed: int) -> dict:
    import backends.tf as tfb
    from vae_core import TrainConfig, VAESpec

    model = tfb.build_model(VAESpec(), seed=seed)
    history = tfb.fit(model, x_train, x_test, TrainConfig(epochs=epochs, seed=seed), progress=False)
    return {"seconds": history["seconds"], "test": tfb.evaluate(model, x_test, seed=0),
            "val_loss": history["val_loss"]}


def child(variant: str, epochs: int, limit: int | None, seed: int, out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import backends.tf  # noqa: F401  (forces Keras onto TensorFlow)

    # The seed-style reference takes float32 pixels, as the seed does; ours the uint8 pixels (x / 255 per block).
    x_train, x_test = fashion_mnist(limit, dtype="float32" if variant == "reference" else "uint8")
    run = _run_reference if variant == "reference" else _run_ours
    result = run(x_train, x_test, epochs, seed)
    result.update(variant=variant, n_train=len(x_train), n_test=len(x_test),
                  peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out.write_text(json.dumps(result))


# ----------------------------------------------------------------------------------------------- parent
def summarize(runs: list[dict]) -> dict:
    """One variant over its rounds (one seed each): the mean steady epoch time (epochs after the first) of each
    round, their median (the headline, as in bench_torch.py), the mean and median over all steady epochs, and
    the mean test loss."""
    steady = [s for r in runs for s in (r["seconds"][1:] or r["seconds"])]
    per_round = [statistics.fmean(r["seconds"][1:] or r["seconds"]) for r in runs]
    steady_s = statistics.median(per_round)
    first = sum(r["seconds"][0] for r in runs) / len(runs)
    loss = [r["test"]["loss"] for r in runs]
    return {"epoch_seconds": [r["seconds"] for r in runs], "round_steady_s_per_epoch": per_round,
            "steady_s_per_epoch": steady_s, "mean_steady_s_per_epoch": statistics.fmean(steady),
            "median_steady_s_per_epoch": statistics.median(steady),
            "images_per_s": runs[0]["n_train"] / steady_s, "first_epoch_overhead_s": first - steady_s,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "test_loss": sum(loss) / len(loss),
            "test_loss_per_seed": loss}


def speedups(rows: dict) -> dict:
    """Ours over the reference, in images/s (reference seconds / our seconds): the headline (median round of
    each), each round's (the two ran back to back), and by the mean and the median of all steady epochs."""
    ref, ours = rows["reference"], rows["ours"]
    return {"median_round": ref["steady_s_per_epoch"] / ours["steady_s_per_epoch"],
            "per_round": [a / b for a, b in zip(ref["round_steady_s_per_epoch"], ours["round_steady_s_per_epoch"])],
            "mean_epoch": ref["mean_steady_s_per_epoch"] / ours["mean_steady_s_per_epoch"],
            "median_epoch": ref["median_steady_s_per_epoch"] / ours["median_steady_s_per_epoch"]}


def markdown(cmd: str, meta: dict, rows: dict, speedup: dict, delta: float) -> str:
    lines = ["# TF backend benchmark", "", f"Command: `{cmd}`", "",
             f"Machine: {meta['machine']}; TensorFlow {meta['tensorflow']}, Keras {meta['keras']}. "
             f"Fashion-MNIST, {meta['n_train']} train / {meta['n_test']} test images, {meta['epochs']} epochs, "
             f"batch 128, default spec (784-400-400-20, Bernoulli), seeds {meta['seeds']} (one round each: the "
             f"reference, then ours).", "",
             "| model | s/epoch (steady, median round) | images/s | s/epoch per round | first-epoch overhead (s) | "
             "peak RSS (MiB) | test loss | epoch times per round (s) |",
             "|---|---:|---:|---|---:|---:|---:|---|"]
    for name, s in rows.items():
        times = "; ".join(", ".join(f"{t:.2f}" for t in seconds) for seconds in s["epoch_seconds"])
        lines.append(f"| {name} | {s['steady_s_per_epoch']:.2f} | {s['images_per_s']:.0f} | "
                     f"{', '.join(f'{t:.2f}' for t in s['round_steady_s_per_epoch'])} | "
                     f"{s['first_epoch_overhead_s']:.2f} | {s['peak_rss_mib']:.0f} | {s['test_loss']:.2f} | {times} |")
    lines += ["", f"Speed-up (steady images/s, ours / reference, median rounds): **{speedup['median_round']:.2f}x** "
                  f"(target >= {TARGET_SPEEDUP}x); per round "
                  f"{', '.join(f'{v:.2f}x' for v in speedup['per_round'])}; over all steady epochs "
                  f"{speedup['mean_epoch']:.2f}x by mean time, {speedup['median_epoch']:.2f}x by median time. "
                  f"Test-loss difference (ours - reference, mean over seeds): **{delta:+.2f} nats** (target within "
                  f"+-{TARGET_LOSS_DELTA}). Per-seed test losses: reference "
                  f"{[round(v, 2) for v in rows['reference']['test_loss_per_seed']]}, ours "
                  f"{[round(v, 2) for v in rows['ours']['test_loss_per_seed']]}.", "",
              "Steady = epochs after the first (train + validation of the test set); a round's s/epoch is the mean "
              "of its steady epochs, and each model's row takes its median round, as bench_torch.py does. The "
              "first-epoch overhead is epoch 1 minus a steady epoch (tracing, and XLA compilation for ours). Test "
              "loss: single-sample negative ELBO of the test set with `backends.tf.evaluate(seed=0)` for both "
              "models. The two runs differ in data order and noise, so their losses differ by seed-to-seed "
              "variation as well.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per model (>= 2: the first one holds the compile)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick check)")
    p.add_argument("--seed", type=int, default=0, help="first seed (init weights, data order, noise)")
    p.add_argument("--seeds", type=int, default=1, help="rounds: run both models for this many seeds, interleaved")
    p.add_argument("--out", nargs="?", const="bench_tf", default=None, metavar="NAME",
                   help="write scripts/results/NAME.md and NAME.json (default NAME: bench_tf)")
    p.add_argument("--child", choices=["reference", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.seeds < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs, --seeds and --limit must be >= 1")
    if args.child:
        child(args.child, args.epochs, args.limit, args.seed, args.child_out)
        return 0

    cmd = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "scripts.bench_tf",
                                              *(sys.argv[1:] if argv is None else argv)])
    seeds = list(range(args.seed, args.seed + args.seeds))
    results: dict[str, list[dict]] = {"reference": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for variant in results:
                out = Path(tmp) / f"{variant}-{seed}.json"
                child_args = [sys.executable, "-m", "scripts.bench_tf", "--child", variant, "--child-out", str(out),
                              "--epochs", str(args.epochs), "--seed", str(seed)]
                if args.limit:
                    child_args += ["--limit", str(args.limit)]
                print(f"running {variant} (seed {seed}) ...", flush=True)
                subprocess.run(child_args, check=True, cwd=ROOT)
                results[variant].append(json.loads(out.read_text()))
    import keras
    import tensorflow as tf

    rows = {name: summarize(runs) for name, runs in results.items()}
    speedup = speedups(rows)
    delta = rows["ours"]["test_loss"] - rows["reference"]["test_loss"]
    meta = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs", "tensorflow": tf.__version__,
            "keras": keras.__version__, "epochs": args.epochs, "seeds": seeds,
            "n_train": results["ours"][0]["n_train"], "n_test": results["ours"][0]["n_test"], "limit": args.limit}
    text = markdown(cmd, meta, rows, speedup, delta)
    print(text)
    if args.out:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text(text)
        (RESULTS / f"{args.out}.json").write_text(json.dumps(
            {"command": cmd, **meta, "results": rows, "raw": results, "speedup": speedup["median_round"],
             "speedups": speedup, "test_loss_delta": delta,
             "targets": {"speedup": TARGET_SPEEDUP, "test_loss_delta": TARGET_LOSS_DELTA},
             "met": speedup["median_round"] >= TARGET_SPEEDUP and abs(delta) <= TARGET_LOSS_DELTA}, indent=1))
        print(f"wrote {RESULTS / args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
