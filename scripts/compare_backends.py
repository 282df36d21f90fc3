"""Train PyTorch and TensorFlow side by side and compare their curves: the same as `vae compare`.

    .venv/bin/python scripts/compare_backends.py --dataset fashion-mnist --epochs 20 --same-init \
        --out scripts/results/compare_fashion_mnist

Writes compare.png (both backends' train and test curves for total, recon and KL, and their per-epoch
difference), compare.md and compare.json (final numbers, per-epoch wall time) into --out. See `vae compare --help`.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vae_core.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
