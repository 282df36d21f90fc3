"""`vae evaluate`: test -ELBO, recon, KL, IWAE NLL and active units of a checkpoint."""
from __future__ import annotations

import argparse
import time
from typing import Any

from vae_core.cli.common import check_output_file, load_model, positive, write_json
from vae_core.data.items import ItemRows
from vae_core.metrics.api import active_units, iwae_nll
from vae_core.registry import evaluate


def run(args: argparse.Namespace) -> int:
    import numpy as np


    positive("--k", args.k, 0)
    positive("--limit", args.limit)
    positive("--seed", args.seed, 0)
    if args.json is not None:
        check_output_file(args.json, "--json", ".json")
    model, ckpt, _, data = load_model(args, with_data=True)
    x = data.x_test if args.split == "test" else data.x_train
    if not hasattr(x, "shape"):  # a map-style dataset (a torchvision one): its items read, and checked, here
        x = ItemRows(x, ckpt.spec, f"--split {args.split}")
    x = np.asarray(x[:args.limit] if args.limit else x)  # a training split still in its .npy is read here, once
    device = args.device or "auto"
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "backend": model.backend_name,
                              "dataset": data.name, "split": args.split, "n": len(x), "epoch": ckpt.epoch}
    start = time.perf_counter()
    result.update({f"elbo_{k}" if k != "loss" else "neg_elbo": v
                   for k, v in evaluate(model, x, seed=args.seed, device=device).items()})
    result["active_units"] = int(active_units(model, x).count)
    if args.k > 0:
        iwae = iwae_nll(model, x, k=args.k, seed=args.seed)
        result.update({"iwae_k": args.k, "iwae_nll": iwae.nll, "iwae_stderr": iwae.stderr})
    result["seconds"] = time.perf_counter() - start
    for key, value in result.items():
        print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
    if args.json is not None:
        write_json(args.json, result)
    return 0
