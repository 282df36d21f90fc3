"""`vae export CHECKPOINT --format F --out DIR`: a checkpoint of either backend as ONNX, a TF SavedModel, LiteRT or
torch.export files, verified in their runtime (`vae_core.deploy.export`)."""
from __future__ import annotations

import argparse

from vae_core.deploy.api import CLI_NAMES, run_export


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def run(args: argparse.Namespace) -> int:
    result = run_export(args.checkpoint, args.out, args.format, not args.no_verify, CLI_NAMES)
    sizes = ", ".join(f"{name} {_size((result.out_dir / name).stat().st_size)}" for name in result.files)
    print(f"vae export: wrote {args.out} ({result.format}): {sizes}")
    check = result.verification
    if check is None:
        print("vae export: not verified (--no-verify)")
        return 0
    worst = ", ".join(f"{name} {error:.2g}" for name, error in check.errors.items())
    print(f"vae export: verified in {check.runtime} against the NumPy reference of the checkpoint, batches of "
          f"{' and '.join(map(str, check.batch_sizes))} rows: max abs error {check.max_abs_error:.2g} "
          f"(tolerance {check.tolerance:g}; {worst})")
    return 0
