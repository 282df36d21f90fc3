"""Train two or more backends side by side and compare their curves: the same as `vae compare`.

    .venv/bin/python -m scripts.compare_backends --dataset fashion-mnist --epochs 20 --same-init \
        --out scripts/results/compare_fashion_mnist

--backends picks them (default torch,tf; e.g. --backends torch,tf,jax), the first the reference. Writes compare.png
(every backend's train and test curves for total, recon and KL, and each one's per-epoch difference from the
reference), compare.md and compare.json (final numbers, per-epoch wall time) into --out. See `vae compare --help`.
"""
import sys

from vae_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
