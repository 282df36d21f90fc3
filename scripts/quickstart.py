"""The README's run command: train the seed's VAE on the offline MNIST digits in both backends.

Writes, under --out: <backend>/last.safetensors and best.safetensors (schema-v1 checkpoints),
<backend>/samples.png, history.json and curves.png (both backends' train and test curves).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vae_core import TrainConfig, VAESpec, build, evaluate, fit
from vae_core.data import load_dataset
from vae_core.plots import plot_history, plot_image_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["torch", "tf", "both"], default="both")
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    args = p.parse_args()

    data = load_dataset(args.dataset)
    spec = VAESpec(input_dim=data.input_dim, image_shape=data.image_shape)
    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    backends = ["torch", "tf"] if args.backend == "both" else [args.backend]
    histories, summary = {}, {}
    for backend in backends:
        out = args.out / backend
        out.mkdir(parents=True, exist_ok=True)
        print(f"== {backend}: {spec.num_params:,} parameters, {len(data.x_train)} train / {len(data.x_test)} test")
        model = build(backend, spec, seed=args.seed)
        start = time.perf_counter()
        histories[backend] = fit(model, data.x_train, data.x_test, config, out_dir=out)
        seconds = time.perf_counter() - start
        summary[backend] = {**evaluate(model, data.x_test), "train_seconds": seconds}
        plot_image_grid(np.asarray(model.sample(50, seed=args.seed)), spec.image_shape, out / "samples.png",
                        title=f"{backend}: samples from the prior")
    (args.out / "history.json").write_text(json.dumps({"histories": histories, "test": summary}, indent=1))
    plot_history(histories, args.out / "curves.png")
    print(f"\n{'backend':8} {'test -ELBO':>11} {'recon':>8} {'KL':>7} {'seconds':>8}")
    for backend, s in summary.items():
        print(f"{backend:8} {s['loss']:11.2f} {s['recon']:8.2f} {s['kl']:7.2f} {s['train_seconds']:8.1f}")
    print(f"\nwrote checkpoints and plots under {args.out}/")


if __name__ == "__main__":
    main()
