"""Make the README gallery: train the default VAE on mnist-5k and write every plot of `vae_core.viz.gallery`.

    python -m scripts.make_gallery            # torch, 10 epochs, seed 0 -> docs/gallery/*.png

The plots use the test split (1,000 images); the history plot shows the run's train and test curves.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from vae_core import TrainConfig, VAESpec, build, evaluate, fit
from vae_core.data import load_dataset
from vae_core.viz.gallery import plot_all


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["torch", "tf"], default="torch")
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dpi", type=int, default=80, help="resolution of the PNGs (80 keeps them small)")
    p.add_argument("--out", type=Path, default=Path("docs/gallery"))
    args = p.parse_args()

    data = load_dataset(args.dataset)
    spec = VAESpec(input_dim=data.input_dim, image_shape=data.image_shape)
    model = build(args.backend, spec, seed=args.seed)
    start = time.perf_counter()
    history = fit(model, data.x_train, data.x_test, TrainConfig(epochs=args.epochs, seed=args.seed))
    test = evaluate(model, data.x_test)
    print(f"{args.backend}: {args.epochs} epochs in {time.perf_counter() - start:.1f} s; test -ELBO "
          f"{test['loss']:.2f} (recon {test['recon']:.2f}, KL {test['kl']:.2f})")
    files = plot_all(model, data.x_test, data.y_test, args.out, history=history, seed=args.seed, dpi=args.dpi)
    for path in files.values():
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
