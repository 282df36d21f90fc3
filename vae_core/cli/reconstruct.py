"""`vae reconstruct`: test images above, a checkpoint's reconstructions below, as a PNG (and a .npy)."""
from __future__ import annotations

import argparse
import sys

from vae_core.cli.common import check_output_file, load_model, positive
from vae_core.viz.gallery import to_numpy
from vae_core.viz.grids import plot_reconstructions


def run(args: argparse.Namespace) -> int:
    import numpy as np


    positive("-n", args.n)
    check_output_file(args.output, "-o/--output", ".png")
    if args.npy is not None:
        check_output_file(args.npy, "--npy", ".npy")
    model, _, _, data = load_model(args, with_data=True)
    x, y = data.x_test[:args.n], data.y_test[:args.n]
    recon = to_numpy(model.reconstruct(x))  # (n, D)
    plot_reconstructions(x, recon, data.image_shape, args.output, labels=y, n=len(x), class_names=data.class_names)
    if args.npy is not None:
        np.save(args.npy, recon, allow_pickle=False)
    print(f"vae reconstruct: wrote {args.output}" + (f" and {args.npy}" if args.npy else ""), file=sys.stderr)
    return 0
