"""What several `vae` commands share: argument checks, loading data and a checkpoint's model, writing results."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vae_core.cli.options import check_dataset_flags, run_info
from vae_core.data.datasets import DATASETS, load_dataset
from vae_core.data.images import load_images
from vae_core.io.atomic import atomic_write
from vae_core.io.checkpoint import read_checkpoint
from vae_core.io.out_dir import prepare_out_dir
from vae_core.io.run_files import check_not_run_file
from vae_core.model.spec import VAESpec
from vae_core.registry import backend_module
from vae_core.system.memory import check_training_memory
from vae_core.viz.gallery import plot_all


def positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")


def check_output_file(path: Path, argument: str, suffix: str) -> Path:
    """An output file of a command (`--json`, `-o`, `--npy`, `--out`): its suffix, that it replaces no checkpoint
    and no run's metadata (`vae_core.io.run_files.check_not_run_file`), and that its folder can be written."""
    if path.suffix.lower() != suffix:
        raise ValueError(f"{argument} must end in {suffix}; got {str(path)!r}")
    check_not_run_file(path, argument)
    prepare_out_dir(path.parent, f"the folder of {argument}")
    return path


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode())


def check_images_fit(spec, data, argument: str) -> None:
    """The data's images are the ones the spec takes: the same input_dim and, with an image_shape, the same shape
    ((H, W) and (H, W, 1) are one shape); else a ValueError naming `argument`."""
    def shape(s):
        return None if s is None else tuple((*s, 1)[:3])

    if data.input_dim != spec.input_dim or (spec.image_shape is not None
                                            and shape(data.image_shape) != shape(spec.image_shape)):
        raise ValueError(f"{argument} gives images of shape {data.image_shape} ({data.input_dim} values), but the "
                         f"checkpoint's model takes image_shape={spec.image_shape} (input_dim={spec.input_dim}); "
                         f"pass the images it was trained on")


def load_data(opts: dict[str, Any], *, download: bool = False, seed: int = 0):
    """The run's images: `opts["data"]` through `load_images` (with its image_size, image_mode and test_fraction),
    or the named `opts["dataset"]` through `load_dataset` (image_size and image_mode: an image folder's)."""

    size = None if opts.get("image_size") is None else tuple(opts["image_size"])
    if opts.get("data") is not None:
        fraction = opts.get("test_fraction")
        return load_images(opts["data"], image_size=size, mode=opts.get("image_mode"),
                           test_fraction=0.1 if fraction is None else fraction, seed=seed)
    return load_dataset(opts["dataset"], data_dir=opts.get("data_dir"), download=download,
                        binarize=opts.get("binarize"), seed=seed, image_size=size, mode=opts.get("image_mode"))


def check_image_size_memory(opts: dict[str, Any], spec_changes: dict[str, Any], *, processes: int = 1) -> None:
    """`vae train --data FOLDER --image-size H,W`: the memory guard (`check_training_memory`) on the smallest model
    those images can give (one channel unless --image-mode RGB, a batch of one) before a file is read, so that a
    size too large to train is refused before the images are resized to it (MemoryLimitError naming --image-size);
    the guard runs again once the data gives the real shape."""
    size, data = opts.get("image_size"), opts.get("data")
    if size is None or data is None or not Path(data).is_dir():
        return
    shape = (int(size[0]), int(size[1]), *((3,) if opts.get("image_mode") == "RGB" else ()))
    changes = {k: v for k, v in spec_changes.items() if k not in ("input_dim", "image_shape")}
    try:
        spec = VAESpec(**changes, image_shape=shape)
    except (TypeError, ValueError):  # refused once the data gives its shape, with the message that names why
        return
    check_training_memory(spec, batch_size=1, precision=opts.get("precision") or "fp32", processes=processes,
                          backend=opts.get("backend"), fix_flags=True)


def load_checkpoint_data(args: argparse.Namespace, info: dict[str, Any], spec=None):
    """The images a command on a checkpoint runs on: --data or --dataset, else the ones its run.json (`info`)
    names; checked against `spec` when given."""

    if args.data is not None or (args.dataset is None and info.get("data") is not None):
        own = {"data": args.data, "image_size": args.image_size, "image_mode": args.image_mode,
               "test_fraction": args.test_fraction} if args.data is not None else info
        data = load_data(own, seed=info.get("seed", 0))
        if spec is not None:
            check_images_fit(spec, data, f"--data {str(own['data'])!r}")
        return data
    name = args.dataset or info.get("dataset")
    if name is None:
        raise ValueError("--dataset is required: the checkpoint has no run.json beside it naming its dataset; "
                         f"pass one of {', '.join(DATASETS)}")
    check_dataset_flags(name, args.image_size, args.image_mode, args.test_fraction)
    same_run = name == info.get("dataset")  # the run's own dataset: binarized, found and sized as in training
    run = info if same_run else {}
    data_dir = args.data_dir if args.data_dir is not None else info.get("data_dir")
    size = args.image_size if args.image_size is not None else run.get("image_size")
    data = load_data({"dataset": name, "data_dir": data_dir, "binarize": run.get("binarize"), "image_size": size,
                      "image_mode": args.image_mode or run.get("image_mode")},
                     download=getattr(args, "download", False), seed=info.get("seed", 0))
    if spec is not None:
        check_images_fit(spec, data, f"--dataset {name!r}")
    return data


def load_model(args: argparse.Namespace, *, with_data: bool = False):
    """(model, checkpoint, run.json, dataset or None) for a subcommand with a CHECKPOINT argument and --backend.

    The checkpoint is read once, and it and the dataset are checked before the backend's framework is imported, so
    a bad argument fails fast and on one line.
    """

    ckpt = read_checkpoint(args.checkpoint)
    info = run_info(args.checkpoint)
    data = load_checkpoint_data(args, info, ckpt.spec) if with_data else None
    module = backend_module(args.backend or ckpt.backend or "torch")
    model = module.build_model(ckpt.spec, seed=0)
    module.weights.import_weights(model, ckpt.weights)
    return model, ckpt, info, data


def save_plots(model: Any, data: Any, folder: Path, history: dict[str, list[float]] | None, seed: int) -> None:
    """Every plot of `model` on the data's test images (and `history`'s curves) into `folder`."""

    folder.mkdir(parents=True, exist_ok=True)
    paths = plot_all(model, data.x_test, data.y_test, folder, history=history, seed=seed,
                     class_names=data.class_names)
    print(f"vae: wrote {len(paths)} plots into {folder}/", file=sys.stderr)
