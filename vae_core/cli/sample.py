"""`vae sample`: draw samples from the prior of a checkpoint's model, as a PNG grid (and a .npy)."""
from __future__ import annotations

import argparse
import sys

from vae_core.cli.common import check_output_file, load_model, positive
from vae_core.viz.gallery import to_numpy
from vae_core.viz.grids import plot_image_grid


def run(args: argparse.Namespace) -> int:
    import numpy as np


    positive("-n", args.n)
    positive("--seed", args.seed, 0)
    check_output_file(args.output, "-o/--output", ".png")
    if args.npy is not None:
        check_output_file(args.npy, "--npy", ".npy")
    model, _, _, _ = load_model(args)
    if model.spec.image_shape is None:
        raise ValueError(f"the checkpoint's input_dim={model.spec.input_dim} is not an image (no image_shape); "
                         f"use --npy only")
    samples = to_numpy(model.sample(args.n, seed=args.seed))  # (n, D)
    plot_image_grid(samples, model.spec.image_shape, args.output, title=f"{args.n} samples from the prior")
    if args.npy is not None:
        np.save(args.npy, samples, allow_pickle=False)
    print(f"vae sample: wrote {args.output}" + (f" and {args.npy}" if args.npy else ""), file=sys.stderr)
    return 0
