"""`vae sample`: draw samples from the prior of a checkpoint's model, as a PNG grid (and a .npy).

Sizes are checked from the checkpoint's header before anything is allocated or written: -n at most MAX_SAMPLES,
and the --npy file within the free space of its disk. The samples are drawn and decoded a chunk at a time
(`chunk_rows`): the grid shows the first GRID_MAX of them, and --npy receives every one, written a chunk at a time
into a temp file that replaces it at the end, so the memory stays bounded for any -n.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vae_core.cli.common import check_output_file, load_model, positive
from vae_core.io.atomic import atomic_write_with
from vae_core.io.checkpoint import read_spec
from vae_core.model.spec import VAESpec
from vae_core.registry import backend_of
from vae_core.system.memory import GIB, estimate_training_memory
from vae_core.viz.gallery import to_numpy
from vae_core.viz.grids import plot_image_grid

GRID_MAX = 400  # images in the PNG grid: 40 rows of 10 (3,600 pixels high at the default dpi); the rest go to --npy
# -n above this is refused: 400 MB of float32 per value of a sample, and hours of decoding; several runs with other
# --seed values draw more
MAX_SAMPLES = 10 ** 8
CHUNK_BYTES = 256 * 2 ** 20  # about the memory one chunk of samples may take as it is decoded
MAX_CHUNK = 4096  # samples decoded at once, at most
SAMPLE_BYTES = 4  # float32


def run(args: argparse.Namespace) -> int:
    positive("-n", args.n)
    positive("--seed", args.seed, 0)
    spec = read_spec(args.checkpoint)  # the header only: the sizes are checked before the weights are read
    n, grid = args.n, spec.image_shape is not None
    check_sample_count(n, spec)
    if not grid and args.npy is None:
        raise ValueError(f"the checkpoint's input_dim={spec.input_dim} is not an image (no image_shape), so there "
                         f"is no grid to draw; pass --npy FILE.npy to save the samples")
    if args.npy is not None:
        check_npy_room(args.npy, n, spec)
    if grid:
        check_output_file(args.output, "-o/--output", ".png")
    if args.npy is not None:
        check_output_file(args.npy, "--npy", ".npy")
    model, _, _, _ = load_model(args)
    shown = min(n, GRID_MAX) if grid else 0
    rows = chunk_rows(model.spec)
    first: list[np.ndarray] = []  # the grid's samples, from the first chunks

    def keep(chunk: np.ndarray, start: int) -> None:
        if start < shown:
            first.append(chunk[:shown - start].copy())

    if args.npy is not None:
        write_npy(args.npy, prior_samples(model, n, args.seed, rows), n, model.spec.input_dim, keep)
    else:  # only the grid's samples are drawn
        start = 0
        for chunk in prior_samples(model, shown, args.seed, rows):
            keep(chunk, start)
            start += len(chunk)
    written = []
    if grid:
        title = f"{n} samples from the prior" if shown == n else f"the first {shown} of {n} samples from the prior"
        plot_image_grid(np.concatenate(first), model.spec.image_shape, args.output, title=title)
        written.append(str(args.output))
    if args.npy is not None:
        written.append(str(args.npy))
    if grid and shown < n:
        rest = f"all {n} are in {str(args.npy)!r}" if args.npy is not None else \
            "pass --npy FILE.npy to save all of them"
        print(f"vae sample: note: the grid shows the first {shown} of the {n} samples (a grid holds at most "
              f"{GRID_MAX}); {rest}", file=sys.stderr)
    elif not grid:
        print(f"vae sample: note: no grid: the checkpoint's input_dim={spec.input_dim} is not an image (no "
              f"image_shape)", file=sys.stderr)
    print(f"vae sample: wrote {' and '.join(written)}", file=sys.stderr)
    return 0


def check_sample_count(n: int, spec: VAESpec) -> None:
    """ValueError naming -n when it is above MAX_SAMPLES, with what the samples would take."""
    if n > MAX_SAMPLES:
        raise ValueError(f"-n {n:,} is more than the {MAX_SAMPLES:,} samples vae sample draws at once: as float32 "
                         f"they would take {size_text(n * spec.input_dim * SAMPLE_BYTES)} ({spec.input_dim:,} values "
                         f"each); pass a smaller -n (the grid shows at most {GRID_MAX}), or draw several sets with "
                         f"different --seed values")


def check_npy_room(path: Path, n: int, spec: VAESpec) -> None:
    """ValueError naming --npy and -n when n samples of `spec` would not fit in the free space of the disk that
    `path` goes on (its nearest existing folder's): the whole file is written beside the old one before it replaces
    it."""
    need = n * spec.input_dim * SAMPLE_BYTES + 128  # the samples, and the .npy header
    folder = next((p for p in (path.parent, *path.parent.parents) if p.is_dir()), Path("."))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # the disk does not say: the write itself reports a full disk
        return
    if need > free:
        raise ValueError(f"--npy {str(path)!r} would hold -n {n:,} samples of {spec.input_dim:,} values as float32, "
                         f"{size_text(need)}, more than the {size_text(free)} free on its disk; pass a smaller -n, or "
                         f"an --npy path on a disk with room")


def chunk_rows(spec: VAESpec) -> int:
    """Samples decoded at once: CHUNK_BYTES over what one example takes in a training step (its activations and
    their gradients: more than decoding it needs), between 1 and MAX_CHUNK."""
    one, two = (estimate_training_memory(spec, batch_size=b).step for b in (1, 2))
    return max(1, min(MAX_CHUNK, CHUNK_BYTES // max(1, two - one)))


def prior_samples(model: Any, n: int, seed: int, rows: int) -> Iterator[np.ndarray]:
    """The n samples of `model.sample(n, seed=seed)`, `rows` at a time as (rows, D) float32: z ~ N(0, I) from one
    `np.random.default_rng(seed)` (the same z in every backend, whatever `rows`), decoded to the mean of p(x|z)."""
    rng = np.random.default_rng(seed)
    latent = model.spec.latent_dim
    with backend_of(model)[1].device.inference(model) as native:
        for start in range(0, n, rows):
            z = rng.standard_normal((min(rows, n - start), latent), dtype=np.float32)  # (rows, L)
            yield to_numpy(model.mean_of(model.decode(native(z))))  # (rows, D)


def write_npy(path: Path, chunks: Iterator[np.ndarray], n: int, d: int, keep: Any = None) -> Path:
    """Write the (n, d) float32 rows that `chunks` yield to the .npy `path` a chunk at a time (the file np.save
    writes, never held whole in memory), atomically; `keep(chunk, start)` sees each chunk as it goes."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                                                      "fortran_order": False, "shape": (n, d)})
            start = 0
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype="<f4")  # (rows, d)
                if keep is not None:
                    keep(chunk, start)
                f.write(chunk.data)
                start += len(chunk)
            if start != n:
                raise RuntimeError(f"write_npy: {start} rows came for an .npy of {n}")

    return atomic_write_with(path, write)


def size_text(n_bytes: int) -> str:
    """Bytes as GiB (or MiB below one GiB), one decimal."""
    return f"{n_bytes / GIB:,.1f} GiB" if n_bytes >= GIB else f"{n_bytes / 2 ** 20:,.1f} MiB"
