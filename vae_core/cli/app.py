"""The `vae` command: train, evaluate, sample, reconstruct, plot and compare, in either backend.

    vae train --backend torch --dataset mnist-5k --epochs 10 --out runs/mnist
    vae train --out runs/mnist --resume --epochs 20 --backend tf   # continue that run in the other backend
    vae evaluate runs/mnist/last.safetensors
    vae sample runs/mnist/last.safetensors -n 100 -o samples.png --npy samples.npy
    vae plot runs/mnist/best.safetensors --out runs/mnist/plots
    vae compare --dataset fashion-mnist --epochs 20 --same-init --out runs/compare
    vae train --nproc 2 --dataset fashion-mnist --out runs/fm   # data-parallel: torchrun, or tf's MirroredStrategy

A bad argument exits with status 2 and one line on stderr, never a traceback; so does a second run into a folder
that another run holds. A run that fails while training (a non-finite loss, or a disk that refuses a write) exits
with status 1 and keeps its last good checkpoint. SIGTERM and Ctrl-C stop at the next step boundary after a
checkpoint of that step, with one line saying how to resume, and exit 143 and 130.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from vae_core.cli.options import RUN_KEYS, add_field_flags, flag_values, image_size, read_config_file
from vae_core.io.atomic import WriteError, atomic_write
from vae_core.io.checkpoint import LAST_FILE, CheckpointError
from vae_core.io.out_dir import prepare_out_dir
from vae_core.io.run_lock import RunLockedError, run_lock
from vae_core.registry import BACKENDS
from vae_core.train.world import launched_rank, launched_world_size

DEBUG_ENV = "VAE_CORE_DEBUG"  # set to 1 to get the traceback instead of the one-line error
RUN_FILE = "run.json"  # the options of a `vae train` run, beside its checkpoints
DATASETS = ("mnist-5k", "digits", "fashion-mnist", "mnist")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
# Errors that mean "the input was wrong": one line, exit status 2.
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError, ImportError,
                CheckpointError, RunLockedError)


class UsageError(Exception):
    """A bad argument found after parsing (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2 (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- shared options


def _add_data_flags(p: argparse.ArgumentParser, *, default: str | None, own_images: bool = True) -> None:
    p.add_argument("--dataset", choices=DATASETS, default=default,
                   help="dataset name" + (f" (default: {default})" if default else
                                          " (default: the one the checkpoint's run.json names)"))
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the IDX files of fashion-mnist or mnist (or their parent)")
    p.add_argument("--download", action="store_true", help="download fashion-mnist/mnist if missing (md5-checked)")
    if not own_images:  # `vae compare` runs on the built-in datasets
        return
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="your own images instead of --dataset: a folder of PNG/JPEG files, or a .npy/.npz array "
                        "(N, H, W[, C]), split 90/10 (--test-fraction) by --seed (vae_core.data.load_images)")
    p.add_argument("--image-size", type=image_size, default=None, metavar="H,W",
                   help="with --data: resize every image file to H x W (otherwise mixed sizes are refused)")
    p.add_argument("--image-mode", choices=("L", "RGB"), default=None,
                   help="with --data: convert every image file to grey levels (L) or colour (RGB)")
    p.add_argument("--test-fraction", type=float, default=None, metavar="F",
                   help="with --data: the share of images held out for testing (default 0.1); it is read into "
                        "memory, while a .npy's training split stays on disk")


def _add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default=None, help="where to run (default: auto)")


def _add_backend_flag(p: argparse.ArgumentParser, help_default: str) -> None:
    p.add_argument("--backend", choices=sorted(BACKENDS), default=None, help=f"backend (default: {help_default})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("train", help="train a VAE and write checkpoints, history and plots into --out",
                       description="Train a VAE. Writes into --out: last.safetensors, best.safetensors, run.json, "
                                   "history.json, history.csv and plots/*.png.")
    _add_backend_flag(p, "torch, or run.json's with --resume")
    _add_data_flags(p, default=None)
    p.add_argument("--binarize", choices=["static"], default=None,
                   help="statically binarize the pixels (one Bernoulli draw per pixel, fixed by --seed)")
    p.add_argument("--config", type=Path, default=None, help="TOML or YAML file with [spec], [train], [run] tables")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/<dataset>-<backend>)")
    _add_device_flag(p)
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="fp32 (default) or bf16 autocast (torch)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out/last.safetensors (either backend wrote it) up to --epochs in total")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel over N: torch, N processes on this host through torch.distributed.run "
                        "(gloo on the CPU, NCCL on GPUs); tf, a MirroredStrategy over N devices (N GPUs, else the "
                        "CPU as N logical devices). --batch-size stays the global batch (default 1)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_field_flags(p)

    p = sub.add_parser("evaluate", help="test -ELBO, recon, KL, IWAE NLL and active units of a checkpoint")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--k", type=int, default=100, help="importance samples for the IWAE NLL; 0 skips it (default 100)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    _add_device_flag(p)

    p = sub.add_parser("sample", help="draw samples from the prior of a checkpoint's model")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    p.add_argument("-n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("-o", "--output", type=Path, default=Path("samples.png"), help="PNG grid (default samples.png)")
    p.add_argument("--npy", type=Path, default=None, help="also save the (n, D) samples as .npy")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("reconstruct", help="originals above, reconstructions below")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("-n", type=int, default=10, help="number of test images (default 10)")
    p.add_argument("-o", "--output", type=Path, default=Path("reconstructions.png"))
    p.add_argument("--npy", type=Path, default=None, help="also save the (n, D) reconstructions as .npy")

    p = sub.add_parser("plot", help="every plot of a checkpoint: reconstructions, samples, latents, t-SNE, ...")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: plots/ beside the checkpoint)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("compare", help="train both backends side by side and plot their curves",
                       description="Train the torch and tf backends with the same spec, config, data and seed; "
                                   "write compare.png, compare.md and compare.json into --out.")
    _add_data_flags(p, default="mnist-5k", own_images=False)
    p.add_argument("--same-init", action="store_true", help="start both from one neutral checkpoint (init.safetensors)")
    p.add_argument("--lockstep", action="store_true",
                   help="also feed both the same noise (the parity suite's shared eps); implies --same-init")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default runs/compare)")
    p.add_argument("--config", type=Path, default=None, help="TOML or YAML file with [spec] and [train] tables")
    _add_device_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_field_flags(p)
    return parser


# ---------------------------------------------------------------- helpers


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode())


def _history_csv(history: dict[str, list[float]]) -> bytes:
    from vae_core.train.history import HISTORY_KEYS

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *HISTORY_KEYS])
    for i in range(len(history.get("train_loss", []))):
        writer.writerow([i + 1, *(history[k][i] if i < len(history.get(k, [])) else "" for k in HISTORY_KEYS)])
    return buf.getvalue().encode()


def _check_output_file(path: Path, argument: str, suffix: str) -> Path:
    if path.suffix.lower() != suffix:
        raise ValueError(f"{argument} must end in {suffix}; got {str(path)!r}")
    prepare_out_dir(path.parent, f"the folder of {argument}")
    return path


def _positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")


def _run_info(checkpoint: Path) -> dict[str, Any]:
    """run.json beside a checkpoint, if `vae train` wrote one; {} otherwise."""
    path = checkpoint.parent / RUN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _load_model(args: argparse.Namespace, *, with_data: bool = False):
    """(model, checkpoint, run.json, dataset or None) for a subcommand with a CHECKPOINT argument and --backend.

    The checkpoint and the dataset are read and checked before the backend's framework is imported, so a bad
    argument fails fast and on one line.
    """
    from vae_core.io.checkpoint import read_checkpoint
    from vae_core.registry import backend_module

    ckpt = read_checkpoint(args.checkpoint)
    info = _run_info(args.checkpoint)
    data = _load_data(args, info, ckpt.spec) if with_data else None
    backend = args.backend or ckpt.backend or "torch"
    module = backend_module(backend)
    model = module.build_model(ckpt.spec, seed=0)
    module.weights.import_weights(model, ckpt.weights)
    return model, ckpt, info, data


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
    or the built-in `opts["dataset"]` through `load_dataset`."""
    from vae_core.data.datasets import load_dataset
    from vae_core.data.images import load_images

    if opts.get("data") is not None:
        size, fraction = opts.get("image_size"), opts.get("test_fraction")
        return load_images(opts["data"], image_size=None if size is None else tuple(size), mode=opts.get("image_mode"),
                           test_fraction=0.1 if fraction is None else fraction, seed=seed)
    return load_dataset(opts["dataset"], data_dir=opts.get("data_dir"), download=download,
                        binarize=opts.get("binarize"), seed=seed)


def _load_data(args: argparse.Namespace, info: dict[str, Any], spec=None):
    from vae_core.data.datasets import load_dataset

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
    data_dir = args.data_dir if args.data_dir is not None else info.get("data_dir")
    same_run = name == info.get("dataset")  # the run's own dataset: binarized as it was in training
    data = load_dataset(name, data_dir=data_dir, download=getattr(args, "download", False),
                        binarize=info.get("binarize") if same_run else None, seed=info.get("seed", 0))
    if spec is not None:
        check_images_fit(spec, data, f"--dataset {name!r}")
    return data


# ---------------------------------------------------------------- train


def resolve_train(args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, run.json (with --resume), --config and flags into the run's options, spec and config."""
    from vae_core.config import TrainConfig
    from vae_core.io.checkpoint import read_checkpoint

    file = read_config_file(args.config) if args.config else {}
    flags = flag_values(args)
    run_file = file.get("run", {})
    explicit = {k: getattr(args, k) for k in RUN_KEYS if getattr(args, k, None) is not None}
    out = Path(explicit.get("out") or run_file.get("out") or "")
    resume_from, previous = None, {}
    if args.resume:
        if not str(out):
            raise ValueError("--resume needs --out: the folder of the run to continue")
        previous = _run_info(out / LAST_FILE)
        if (out / LAST_FILE).is_file():
            resume_from = out / LAST_FILE
        else:
            print(f"vae train: no {LAST_FILE} in {str(out)!r} yet; starting from scratch", file=sys.stderr)
    if explicit.get("dataset") is not None and explicit.get("data") is not None:
        raise ValueError(f"pass --dataset or --data, not both; got --dataset {explicit['dataset']!r} and --data "
                         f"{str(explicit['data'])!r}")
    given = {**{k: v for k, v in previous.items() if k in RUN_KEYS}, **run_file, **explicit}
    if "dataset" in explicit or "data" in explicit:  # one source: the one asked for now replaces the other's keys
        other = ("data", "image_size", "image_mode", "test_fraction") if "dataset" in explicit else \
            ("dataset", "binarize", "data_dir")
        for key in other:
            if key not in explicit:
                given.pop(key, None)
    if given.get("data") is not None and given.get("dataset") is not None:
        raise ValueError(f"pass --dataset or --data, not both; got --dataset {given['dataset']!r} and --data "
                         f"{str(given['data'])!r}")
    opts = {"backend": "torch", "dataset": None if given.get("data") else "mnist-5k", "data": None,
            "image_size": None, "image_mode": None, "test_fraction": None, "data_dir": None, "binarize": None,
            "device": "auto",
            "precision": "fp32", **given}
    if opts["data"] is not None:
        opts["data"] = os.path.abspath(opts["data"])  # run.json's path works from any folder
        if opts["binarize"] is not None:
            raise ValueError("--binarize applies to --dataset; binarize your own images before passing --data")
    elif opts["image_size"] is not None or opts["image_mode"] is not None or opts["test_fraction"] is not None:
        raise ValueError("--image-size, --image-mode and --test-fraction apply to --data (your own image files); "
                         f"drop them for --dataset {opts['dataset']!r}")
    if not str(out):
        source = opts["dataset"] or Path(opts["data"]).stem or "data"
        out = Path("runs") / f"{source}-{opts['backend']}"
    opts["out"] = str(out)
    for key, choices in (("backend", sorted(BACKENDS)), ("dataset", (*DATASETS, None)), ("device", DEVICES),
                         ("precision", PRECISIONS)):
        if opts[key] not in choices:
            raise ValueError(f"{key} must be one of {', '.join(c for c in choices if c)}; got {opts[key]!r} "
                             f"(from --config)")

    spec_changes = {**file.get("spec", {}), **flags["spec"]}
    config_changes = {**file.get("train", {}), **flags["train"]}
    if resume_from is not None:
        ckpt = read_checkpoint(resume_from)
        differs = {k: v for k, v in spec_changes.items() if getattr(ckpt.spec, k) != v}
        if differs:
            raise ValueError(f"--resume: {str(resume_from)!r} holds a model with {ckpt.spec.to_dict()}; the spec "
                             f"cannot change on resume, but {differs} was asked for. Drop those flags or use a "
                             f"new --out")
        spec = ckpt.spec
        config = (ckpt.train_config or TrainConfig()).replace(**config_changes)
    else:
        spec, config = None, TrainConfig(**config_changes)
    return {"opts": opts, "spec": spec, "spec_changes": spec_changes, "config": config, "resume_from": resume_from}


def cmd_train(args: argparse.Namespace) -> int:
    from vae_core.model.spec import VAESpec
    from vae_core.registry import backend_module, build, fit

    _positive("--nproc", args.nproc)
    plan = resolve_train(args)
    opts, config = plan["opts"], plan["config"]
    if config.batch_size % args.nproc:
        raise ValueError(f"--batch-size {config.batch_size} must divide by --nproc {args.nproc}: it is the global "
                         f"batch, split evenly between them; use a multiple of {args.nproc}")
    rank, launched = launched_rank(), launched_world_size() > 1  # under torchrun: rank 0 writes and prints
    data = load_data(opts, download=args.download, seed=config.seed)
    spec = plan["spec"]
    if spec is None:
        changes = dict(plan["spec_changes"])
        for name, value in (("input_dim", data.input_dim), ("image_shape", data.image_shape)):
            if name in changes and changes[name] != value:
                raise ValueError(f"--{name.replace('_', '-')} {changes[name]} does not match dataset "
                                 f"{data.name!r}, whose images give {name}={value}; drop the flag")
            changes[name] = value
        spec = VAESpec(**changes)
    else:
        check_images_fit(spec, data, f"--resume: {data.name!r}")
    strategy = None
    if args.nproc > 1 and opts["backend"] == "tf":  # before TensorFlow starts: it may split the CPU
        if opts["device"] != "auto":
            raise ValueError(f"--nproc {args.nproc} with --backend tf trains on the strategy's devices; drop "
                             f"--device {opts['device']}")
        from backends.tf.distributed import mirrored_strategy

        strategy = mirrored_strategy(args.nproc)
    backend_module(opts["backend"]).device.resolve_device(opts["device"], "--device")  # imports the framework
    out = prepare_out_dir(Path(opts["out"]), "--out")  # every argument is checked before anything is written
    if args.nproc > 1 and opts["backend"] == "torch" and not launched:
        del data  # checked; each rank loads its own
        return _launch_torchrun(args.nproc, args.argv, out)
    writer = rank == 0
    with run_lock(out, "--out") if writer else contextlib.nullcontext():  # one run per folder
        if not writer:  # another rank of a torchrun job: it trains, rank 0 writes
            model = build(opts["backend"], spec, seed=config.seed)
            fit(model, data.x_train, data.x_test, config, out_dir=out, resume_from=plan["resume_from"],
                device=opts["device"], precision=opts["precision"], progress=False)
            return 0
        for stale in out.glob(".*.safetensors.*.tmp"):  # temp files of a write that was killed mid-way
            stale.unlink()
        info = {**opts, "seed": config.seed, "spec": spec.to_dict(), "train_config": config.to_dict(),
                "argv": sys.argv[1:]}
        _write_json(out / RUN_FILE, info)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = build(opts["backend"], spec, seed=config.seed)
        start_msg = f"resuming {plan['resume_from']}" if plan["resume_from"] else "training"
        size = launched_world_size() if launched else args.nproc
        world = f" x {size}" if size > 1 else ""
        print(f"vae train: {start_msg}: {opts['backend']}{world} on {data.name} ({len(data.x_train)} train / "
              f"{len(data.x_test)} test), {spec.num_params:,} parameters, {config.epochs} epochs -> {out}/",
              file=sys.stderr)
        kwargs: dict[str, Any] = {"out_dir": out, "resume_from": plan["resume_from"], "device": opts["device"],
                                  "precision": opts["precision"], "progress": not args.no_progress}
        history = fit(model, data.x_train, data.x_test, config, **kwargs)
        _write_json(out / "history.json", history)
        atomic_write(out / "history.csv", _history_csv(history))
        if not args.no_plots:
            _plots(model, data, out / "plots", history, seed=config.seed)
        last = {k: history[k][-1] for k in ("train_loss", "val_loss", "val_recon", "val_kl") if history.get(k)}
        print(json.dumps({"out": str(out), "epochs": len(history["train_loss"]), **last}))
    return 0


def _launch_torchrun(nproc: int, argv: Sequence[str], out: Path) -> int:
    """`vae train` again, as `nproc` processes on this host through torch's own launcher (torch.distributed.run,
    the module behind torchrun, with a local rendezvous); returns the exit status.

    The arguments were checked here first, so a bad one is one line and status 2 before any process starts. This
    process holds the folder's run lock for the job (`vae_core.io.run_lock.HELD_ENV`). SIGTERM and SIGINT are passed
    on to the launcher, which passes them to every rank: they stop at the same step with one checkpoint, rank 0
    prints the line that says how to resume, and the status is 128 + the signal. A failed rank makes the launcher
    stop the others (status 1, with its report).
    """
    import subprocess

    from vae_core.io.run_lock import HELD_ENV

    rest, skip = [], False
    for arg in argv:  # the same command line without --nproc
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "vae_core.cli.torchrun", "--standalone", f"--nproc-per-node={nproc}",
               "--module", "vae_core.cli", *rest]
    with run_lock(out, "--out") as lock:
        print(f"vae train: launching {nproc} processes: torch.distributed.run {shlex.join(command[3:])}",
              file=sys.stderr)
        # its own session: a terminal's Ctrl-C reaches the job once, through this process
        env = {**os.environ, HELD_ENV: str(lock), "LOGLEVEL": os.environ.get("LOGLEVEL", "ERROR")}  # torch elastic's
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        received: list[int] = []

        def forward(signum: int, frame: Any) -> None:
            received.append(signum)
            proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            status = proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if received:
        return 128 + received[0]
    return 0 if status == 0 else 1


def _plots(model: Any, data: Any, folder: Path, history: dict[str, list[float]] | None, seed: int) -> None:
    from vae_core.viz.gallery import plot_all

    folder.mkdir(parents=True, exist_ok=True)
    paths = plot_all(model, data.x_test, data.y_test, folder, history=history, seed=seed)
    print(f"vae: wrote {len(paths)} plots into {folder}/", file=sys.stderr)


# ---------------------------------------------------------------- evaluate, sample, reconstruct, plot


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from vae_core.registry import evaluate

    _positive("--k", args.k, 0)
    _positive("--limit", args.limit)
    _positive("--seed", args.seed, 0)
    if args.json is not None:
        _check_output_file(args.json, "--json", ".json")
    model, ckpt, _, data = _load_model(args, with_data=True)
    x = data.x_test if args.split == "test" else data.x_train
    x = np.asarray(x[:args.limit] if args.limit else x)  # a training split still in its .npy is read here, once
    device = args.device or "auto"
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "backend": model.backend_name,
                              "dataset": data.name, "split": args.split, "n": len(x), "epoch": ckpt.epoch}
    start = time.perf_counter()
    result.update({f"elbo_{k}" if k != "loss" else "neg_elbo": v
                   for k, v in evaluate(model, x, seed=args.seed, device=device).items()})
    try:
        from vae_core import metrics
    except ImportError:  # pragma: no cover - the metrics module ships with the package
        metrics = None
    if metrics is not None:
        units = metrics.active_units(model, x)
        result["active_units"] = int(units.count)
        if args.k > 0:
            iwae = metrics.iwae_nll(model, x, k=args.k, seed=args.seed)
            result.update({"iwae_k": args.k, "iwae_nll": iwae.nll, "iwae_stderr": iwae.stderr})
    result["seconds"] = time.perf_counter() - start
    for key, value in result.items():
        print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
    if args.json is not None:
        _write_json(args.json, result)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from vae_core.viz.gallery import to_numpy
    from vae_core.viz.grids import plot_image_grid

    _positive("-n", args.n)
    _positive("--seed", args.seed, 0)
    _check_output_file(args.output, "-o/--output", ".png")
    if args.npy is not None:
        _check_output_file(args.npy, "--npy", ".npy")
    model, _, _, _ = _load_model(args)
    if model.spec.image_shape is None:
        raise ValueError(f"the checkpoint's input_dim={model.spec.input_dim} is not an image (no image_shape); "
                         f"use --npy only")
    samples = to_numpy(model.sample(args.n, seed=args.seed))  # (n, D)
    plot_image_grid(samples, model.spec.image_shape, args.output, title=f"{args.n} samples from the prior")
    if args.npy is not None:
        np.save(args.npy, samples, allow_pickle=False)
    print(f"vae sample: wrote {args.output}" + (f" and {args.npy}" if args.npy else ""), file=sys.stderr)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np

    from vae_core.viz.gallery import to_numpy
    from vae_core.viz.grids import plot_reconstructions

    _positive("-n", args.n)
    _check_output_file(args.output, "-o/--output", ".png")
    if args.npy is not None:
        _check_output_file(args.npy, "--npy", ".npy")
    model, _, _, data = _load_model(args, with_data=True)
    x, y = data.x_test[:args.n], data.y_test[:args.n]
    recon = to_numpy(model.reconstruct(x))  # (n, D)
    plot_reconstructions(x, recon, data.image_shape, args.output, labels=y, n=len(x))
    if args.npy is not None:
        np.save(args.npy, recon, allow_pickle=False)
    print(f"vae reconstruct: wrote {args.output}" + (f" and {args.npy}" if args.npy else ""), file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    _positive("--seed", args.seed, 0)
    folder = prepare_out_dir(args.out or args.checkpoint.parent / "plots", "--out")
    model, ckpt, _, data = _load_model(args, with_data=True)
    _plots(model, data, folder, ckpt.history or None, seed=args.seed)
    return 0


# ---------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    from vae_core.cli.compare import compare_backends

    file = read_config_file(args.config) if args.config else {}
    flags = flag_values(args)
    out = prepare_out_dir(args.out, "--out")
    result = compare_backends(dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                              spec_changes={**file.get("spec", {}), **flags["spec"]},
                              config_changes={**file.get("train", {}), **flags["train"]},
                              same_init=args.same_init or args.lockstep, lockstep=args.lockstep, out=out,
                              device=args.device or "auto", progress=not args.no_progress,
                              command=args.command_line)
    print(result["markdown"])
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "reconstruct": cmd_reconstruct,
            "plot": cmd_plot, "compare": cmd_compare}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vae` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices, not its errors
    from vae_core.train.history import NonFiniteLossError
    from vae_core.train.interrupt import TrainingInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["vae", *argv])  # written into results (vae compare)
    args.argv = argv
    prog = f"vae {args.command}"
    try:
        return COMMANDS[args.command](args)
    except NonFiniteLossError as e:
        print(f"{prog}: training stopped: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except WriteError as e:  # the disk refused a write (ENOSPC, EFBIG, EIO, EACCES): the last good checkpoint stays
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}; the previous checkpoint is untouched", file=sys.stderr)
        return 1
    except USAGE_ERRORS as e:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # any other failure of the system (a read error): not the input's fault
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:  # SIGTERM or Ctrl-C while training: a checkpoint of that step was written
        if launched_rank() != 0:  # every rank of a torchrun job stops at this step; rank 0 says so
            return e.exit_status
        where = (f"resume with: vae train --out {shlex.quote(str(Path(e.checkpoint).parent))} --resume"
                 if e.checkpoint else "nothing was saved")
        print(f"{prog}: stopped by {signal.Signals(e.signum).name} at epoch {e.epoch}, step {e.step} "
              f"(1-based, the last step done); {where}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a rank of a torchrun job: often the consequence of another rank's failure
        if launched_world_size() <= 1 or os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: rank {launched_rank()} stopped: {type(e).__name__}: {' '.join(str(e).split())[:300]}",
              file=sys.stderr)
        return 1

