"""`vae score`: a score per example (−log p̂(x), nats) for a checkpoint's model, as a CSV and a histogram PNG.

With --reference, the reference set is scored the same way (same k, same seed), its histogram is drawn over the
data's, and each example whose score lies above the --quantile of the reference scores is flagged. Everything is
checked (arguments, the checkpoint, both data sources against its spec, the output paths) before the framework
is imported; the PNG and the CSV are written atomically, after every score is known, so a failing run leaves any
earlier files as they were.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

import numpy as np

from vae_core.cli.common import check_output_file, positive
from vae_core.cli.options import run_info
from vae_core.cli.score_sources import Examples, data_examples, reference_examples
from vae_core.io.atomic import atomic_write
from vae_core.io.checkpoint import read_checkpoint
from vae_core.metrics.api import score
from vae_core.registry import backend_module
from vae_core.viz.scores import scores_png

DEFAULT_QUANTILE = 0.99


def _check_args(args: argparse.Namespace) -> tuple[Path, Path, float | None]:
    """(the CSV, the PNG beside it, the quantile or None without --reference), or the ValueError naming the flag."""
    positive("--k", args.k)
    positive("--limit", args.limit)
    positive("--seed", args.seed, 0)
    if args.quantile is not None and args.reference is None:
        raise ValueError(f"--quantile {args.quantile} sets the threshold on the scores of --reference; pass "
                         f"--reference NAME|PATH too, or drop --quantile")
    quantile = None if args.reference is None else DEFAULT_QUANTILE if args.quantile is None else args.quantile
    if quantile is not None and not (math.isfinite(quantile) and 0.0 < quantile < 1.0):
        raise ValueError(f"--quantile must be a number in (0, 1), such as 0.99 (the 99th percentile of the reference "
                         f"scores); got {args.quantile}")
    out = check_output_file(args.out, "--out", ".csv")
    png = out.with_suffix(".png")
    if not args.overwrite:
        for path, what in ((out, "--out"), (png, "the histogram beside --out")):
            if path.exists():
                raise ValueError(f"{what} {str(path)!r} exists; pass --overwrite to replace it, or another --out")
    return out, png, quantile


def _csv(examples: Examples, scores: np.ndarray, flagged: np.ndarray | None) -> bytes:
    """One row per example: index, file (an image folder's), label and class (when known), score, flagged."""
    columns = ["index", *(["file"] if examples.files is not None else []),
               *(["label", "class"] if examples.labels is not None else []), "score",
               *(["flagged"] if flagged is not None else [])]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for i, value in enumerate(scores.tolist()):
        row: list[object] = [i]
        if examples.files is not None:
            row.append(examples.files[i])
        if examples.labels is not None:
            label = int(examples.labels[i])
            row += [label, examples.class_names[label] if examples.class_names else label]
        row.append(f"{value:.6f}")
        if flagged is not None:
            row.append(int(flagged[i]))
        writer.writerow(row)
    return text.getvalue().encode()


def run(args: argparse.Namespace) -> int:
    out, png, quantile = _check_args(args)
    ckpt = read_checkpoint(args.checkpoint)
    info = run_info(args.checkpoint)
    data = data_examples(args, info, ckpt.spec)
    reference = reference_examples(args, info, ckpt.spec)
    module = backend_module(args.backend or ckpt.backend or "torch")  # the framework is imported here
    model = module.build_model(ckpt.spec, seed=0)
    module.weights.import_weights(model, ckpt.weights)
    options = dict(k=args.k, seed=args.seed, progress=not args.no_progress, device=args.device or "auto")
    scores = score(model, data.x, **options)  # (N,)
    ref_scores = threshold = flagged = None
    if reference is not None:
        ref_scores = score(model, reference.x, **options)  # (M,)
        threshold = float(np.quantile(ref_scores, quantile))
        flagged = scores > threshold  # (N,)
    title = f"{data.name}: {len(scores):,} scores, k={args.k}, {model.backend_name}"
    atomic_write(png, scores_png(scores, reference=ref_scores, threshold=threshold, quantile=quantile,
                                 label=data.name, reference_label=reference.name if reference else "reference",
                                 title=title))
    atomic_write(out, _csv(data, scores, flagged))
    print(f"{len(scores)} examples of {data.name}: mean score {scores.mean():.4f} nats (k={args.k}, seed "
          f"{args.seed}); median {np.median(scores):.4f}, max {scores.max():.4f}")
    if reference is not None:
        print(f"threshold {threshold:.4f} nats, the {quantile:g} quantile of {len(ref_scores)} scores of "
              f"{reference.name}: {int(flagged.sum())} of {len(scores)} flagged ({100 * flagged.mean():.1f}%)")
    print(f"vae score: wrote {out} and {png}", file=sys.stderr)
    return 0
