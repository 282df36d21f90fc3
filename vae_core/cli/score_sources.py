"""What `vae score` scores: the examples of --data or --dataset, and of --reference, each with what its CSV row says
(its index, its file for an image folder, its label when known).

- `--data PATH` (a folder of images, a .npy/.npz): every image, in file order (`--split all`, its default), or the
  split `load_images` makes with `--split test|train` (as `vae evaluate --data`). A .npy stays memory-mapped and is
  read a batch at a time.
- `--dataset NAME` (or the dataset of the checkpoint's run.json): its `--split` (default test), as `vae evaluate`.
- `--reference NAME|PATH`: a dataset's test split, or every image of a folder or array file.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from vae_core.cli.common import check_images_fit, load_checkpoint_data
from vae_core.data.datasets import DATASETS
from vae_core.data.images import read_images
from vae_core.data.mapped import MappedRows
from vae_core.data.vision import IMAGE_FOLDER
from vae_core.model.spec import VAESpec

SPLITS = ("test", "train", "all")


@dataclass(frozen=True)
class Examples:
    """A set of examples to score, and what its CSV rows say about each."""

    name: str  # the set's name in the histogram's legend
    x: Any  # (N, D) rows, a .npy's rows (memory-mapped), or a map-style dataset: what vae_core.score reads
    labels: np.ndarray | None  # (N,) int labels, when known (a dataset's classes, an image folder's class folders)
    class_names: tuple[str, ...] | None  # the name of each label
    files: tuple[str, ...] | None  # each example's file, relative to the image folder it came from

    def __len__(self) -> int:
        return len(self.x)


class _Head:
    """The first n items of a map-style dataset: --limit without reading the rest."""

    def __init__(self, dataset: Any, n: int):
        self.dataset, self.n = dataset, min(n, len(dataset))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.dataset[i]


def _head(examples: Examples, limit: int | None) -> Examples:
    """The first `limit` examples (all for None), still where they are: a view of an array or a map, or `_Head`."""
    if limit is None or limit >= len(examples):
        return examples
    x = examples.x
    if isinstance(x, MappedRows):
        x = MappedRows(x.source, x.index[:limit])
    elif isinstance(x, np.ndarray):
        x = x[:limit]  # a view: of a memory map, still mapped
    else:
        x = _Head(x, limit)
    cut = (lambda v: None if v is None else v[:limit])
    return Examples(examples.name, x, cut(examples.labels), examples.class_names, cut(examples.files))


def _from_path(path: Path, args: argparse.Namespace, spec: VAESpec, argument: str) -> Examples:
    """Every image of a folder or an array file, checked against the checkpoint's spec."""
    images = read_images(path, image_size=args.image_size, mode=args.image_mode)
    check_images_fit(spec, SimpleNamespace(input_dim=images.x.shape[1], image_shape=images.image_shape), argument)
    labels = images.y if images.class_names is not None else None
    return Examples(path.name or str(path), images.x, labels, images.class_names, images.files)


def _from_dataset(data: Any, split: str) -> Examples:
    """A Dataset's split: its labels when it names its classes, its files when it came from an image folder."""
    test = split == "test"
    return Examples(f"{data.name} {split}", data.x_test if test else data.x_train,
                    (data.y_test if test else data.y_train) if data.class_names is not None else None,
                    data.class_names, data.files_test if test else data.files_train)


def data_examples(args: argparse.Namespace, info: dict[str, Any], spec: VAESpec) -> Examples:
    """The examples of --data or --dataset (or run.json's data), their --split, the first --limit."""
    if args.data is not None and args.dataset is not None:
        raise ValueError(f"pass --data {str(args.data)!r} or --dataset {args.dataset!r}, not both: they are the "
                         f"examples to score (--reference takes a second source)")
    split = args.split or ("all" if args.data is not None else "test")
    if split == "all":
        if args.data is None:
            raise ValueError("--split all reads every image of --data PATH; for a dataset, pass --split test or "
                             "--split train")
        if args.test_fraction is not None:
            raise ValueError("--test-fraction splits --data for --split test or train; drop it for --split all "
                             "(every image)")
        return _head(_from_path(args.data, args, spec, f"--data {str(args.data)!r}"), args.limit)
    return _head(_from_dataset(load_checkpoint_data(args, info, spec), split), args.limit)


def reference_examples(args: argparse.Namespace, info: dict[str, Any], spec: VAESpec) -> Examples | None:
    """The examples of --reference: a dataset's test split, or every image of a path; the first --limit."""
    ref = args.reference
    if ref is None:
        return None
    if ref in DATASETS:
        folder = ref == IMAGE_FOLDER  # --image-size and --image-mode apply to an image folder's files only
        own = argparse.Namespace(**{**vars(args), "data": None, "dataset": ref, "test_fraction": None,
                                    "image_size": args.image_size if folder else None,
                                    "image_mode": args.image_mode if folder else None})
        return _head(_from_dataset(load_checkpoint_data(own, info, spec), "test"), args.limit)
    path = Path(ref)
    if not path.exists():
        raise FileNotFoundError(f"--reference {ref!r} is neither a dataset ({', '.join(DATASETS)}) nor an existing "
                                f"folder of images or .npy/.npz file; pass one of those")
    return _head(_from_path(path, args, spec, f"--reference {ref!r}"), args.limit)
