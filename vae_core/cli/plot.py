"""`vae plot`: every plot of a checkpoint (reconstructions, samples, latents, t-SNE, ...) into a folder."""
from __future__ import annotations

import argparse

from vae_core.cli.common import load_model, positive, save_plots
from vae_core.io.out_dir import prepare_out_dir


def run(args: argparse.Namespace) -> int:
    positive("--seed", args.seed, 0)
    folder = prepare_out_dir(args.out or args.checkpoint.parent / "plots", "--out")
    model, ckpt, _, data = load_model(args, with_data=True)
    save_plots(model, data, folder, ckpt.history or None, seed=args.seed)
    return 0
