"""The load-time cost of checkpoint checksums: `read_checkpoint` of the default model's checkpoint (weights and
Adam moments), with the SHA-256 checks (schema 2) and without them (the same tensors as a schema-1 file), side by
side in one process, interleaved; the median of --repeats reads each.

    .venv/bin/python -m scripts.bench_checksums    # prints the table, writes scripts/results/bench_checksums.md
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from scripts.benchlib import cpu_name
from vae_core import AdamState, Checkpoint, TrainConfig, VAESpec, init_weights, read_checkpoint
from vae_core.io.atomic import atomic_write
from vae_core.io.checkpoint import METADATA_KEY, tensor_checksum, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> tuple[Path, Path]:
    spec = VAESpec()
    weights = init_weights(spec, 0)
    adam = AdamState(step=1, m={k: v * 0.1 for k, v in weights.items()}, v={k: v * v for k, v in weights.items()})
    v2 = write_checkpoint(folder / "v2.safetensors", Checkpoint(spec=spec, weights=weights, adam=adam,
                                                                train_config=TrainConfig(), epoch=1))
    from safetensors.numpy import save
    tensors = {**weights, **{f"adam.m.{k}": a for k, a in adam.m.items()},
               **{f"adam.v.{k}": a for k, a in adam.v.items()}}
    meta = {"schema_version": 1, "spec": spec.to_dict(), "train_config": TrainConfig().to_dict(), "epoch": 1,
            "history": {}, "adam_step": 1, "trainer_state": {}, "backend": None}
    v1 = atomic_write(folder / "v1.safetensors", save(tensors, metadata={METADATA_KEY: json.dumps(meta)}))
    return v1, v2


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_checksums.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        v1, v2 = _files(Path(tmp))
        size = v2.stat().st_size
        times: dict[str, list[float]] = {"without checksums (schema 1)": [], "with SHA-256 checks (schema 2)": []}
        hash_only = []
        arrays = list(read_checkpoint(v2).weights.values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # schema 1's "no checksums" warning
            for _ in range(args.repeats):
                for label, path in zip(times, (v1, v2)):
                    start = time.perf_counter()
                    read_checkpoint(path)
                    times[label].append(time.perf_counter() - start)
                start = time.perf_counter()
                for a in arrays:
                    tensor_checksum(a)
                hash_only.append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    base, checked = med.values()
    command = shlex.join([".venv/bin/python", "-m", "scripts.bench_checksums", *(argv or sys.argv[1:])])
    lines = ["# Checkpoint checksums: load-time cost", "", f"Command: `{command}`", "",
             f"File: the default 784-400-400-20 model's checkpoint with Adam moments, {size / 2**20:.1f} MiB. "
             f"Machine: {cpu_name()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}. "
             f"Median of {args.repeats} reads each, interleaved in one process (the file in the page cache).", "",
             "| read_checkpoint | ms (median) |", "|---|---:|",
             *[f"| {k} | {v:.2f} |" for k, v in med.items()], "",
             f"The checks cost {checked - base:.2f} ms a load ({checked / base - 1:+.0%}); hashing the weights "
             f"alone takes {statistics.median(hash_only) * 1e3:.2f} ms, "
             f"{sum(a.nbytes for a in arrays) / statistics.median(hash_only) / 2**30:.2f} GiB/s (hashlib's SHA-256)."]
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write(args.out, text.encode())


if __name__ == "__main__":
    main()
