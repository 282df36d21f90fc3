"""The options of the `vae` commands: spec and config fields as flags, `--config` files, run.json, their merging.

The flags are generated from the dataclasses, so a new field gets a flag and its one-line comment becomes
the help text. Precedence, lowest first: the dataclass defaults (or a resumed checkpoint's values), the
config file, the flags given on the command line (`resolve_train` merges them for `vae train`).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any

from vae_core.cli.config_text import load_yaml, toml_error
from vae_core.cli.backend_options import check_applies
from vae_core.cli.config_values import config_text, config_value
from vae_core.config import TrainConfig
from vae_core.data.datasets import DATASETS
from vae_core.data.vision import IMAGE_FOLDER
from vae_core.io.checkpoint import LAST_FILE, read_checkpoint
from vae_core.io.files import check_regular_file
from vae_core.io.run_files import RUN_FILE, resume_checkpoint
from vae_core.model.spec import ARCHITECTURES, LIKELIHOODS, VAESpec
from vae_core.registry import BACKENDS
from vae_core.train.world import launched_rank

SECTIONS = {"spec": VAESpec, "train": TrainConfig}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
# Fields the data decides; a flag or config value for them is checked against the dataset.
DATA_FIELDS = ("input_dim", "image_shape")


def field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field of a dataclass's source: the help text of its flag."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^#]*#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 400,400; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 400,400; got {text!r}")
    return values


def _optional(convert: Any, what: str) -> Any:
    """An argparse type: `convert(text)`, or None for 'none' or 'off'."""
    def parse(text: str) -> Any:
        if text.lower() in ("none", "off"):
            return None
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none'; got {text!r}") from None
    return parse


_optional_float, _optional_int = _optional(float, "a number"), _optional(int, "an integer")


def _optional_shape(text: str) -> tuple[int, ...] | None:
    return None if text.lower() == "none" else _int_tuple(text)


def _flag_kwargs(name: str, hint: Any) -> dict[str, Any]:
    """argparse keyword arguments for a field of type `hint`."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint is int:
        return {"type": int, "metavar": "INT"}
    if hint is float:
        return {"type": float, "metavar": "X"}
    if name == "likelihood":
        return {"choices": LIKELIHOODS}
    if name == "architecture":
        return {"choices": ARCHITECTURES}
    if hint is str:
        return {"type": str}
    if hint == (float | None) or hint == typing.Optional[float]:
        return {"type": _optional_float, "metavar": "X|none"}
    if hint == (int | None) or hint == typing.Optional[int]:
        return {"type": _optional_int, "metavar": "N|none"}
    if hint == tuple[int, ...]:
        return {"type": _int_tuple, "metavar": "N,N,..."}
    if name == "image_shape":
        return {"type": _optional_shape, "metavar": "H,W[,C]"}
    raise TypeError(f"no command-line type for field {name!r} of type {hint!r}")


def add_field_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per VAESpec and TrainConfig field (`--latent-dim`, `--early-stopping/--no-early-stopping`)."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{cls.__name__} fields (override --config)")
        hints, comments = typing.get_type_hints(cls), field_comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.name not in DATA_FIELDS else "from the dataset"
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"{section}.{f.name}",
                               default=argparse.SUPPRESS, help=f"{comments.get(f.name, '')} (default: {default})",
                               **_flag_kwargs(f.name, hints[f.name]))


def flag_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The field flags given on the command line, as {"spec": {...}, "train": {...}}."""
    given = {section: {} for section in SECTIONS}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if section in given and name:
            given[section][name] = value
    return given


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """A TOML (.toml) or YAML (.yaml/.yml) file with `[spec]` and `[train]` tables, and optionally `[run]`.

    `[run]` holds the non-field options (backend, dataset or data, image_size, image_mode, test_fraction, data_dir,
    device, precision, out, tensorboard, mlflow). Unknown sections or keys are errors, so a typo never passes silently.
    """
    path = check_regular_file(Path(path), "--config", "pass a .toml or .yaml file")  # a FIFO would block the read
    text = config_text(path)  # UTF-8; a leading byte-order mark dropped
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(toml_error(path, text, e)) from None  # a key given twice: with its line
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ImportError("--config: reading YAML needs PyYAML; pip install pyyaml, or use a .toml file") from None
        try:
            data = load_yaml(text, path) or {}  # safe_load that refuses a key given twice
        except yaml.YAMLError as e:
            raise ValueError(f"--config {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    else:
        raise ValueError(f"--config must end in .toml, .yaml or .yml; got {str(path)!r}")
    if not isinstance(data, dict):
        raise ValueError(f"--config {str(path)!r} must hold tables [spec], [train] and [run]; got {type(data).__name__}")
    unknown = sorted(set(data) - {*SECTIONS, "run"})
    if unknown:
        raise ValueError(f"--config {str(path)!r}: unknown section(s) {unknown}; allowed: spec, train, run")
    out: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"--config {str(path)!r}: [{section}] must be a table; got {table!r}")
        allowed = ({f.name for f in dataclasses.fields(SECTIONS[section])} if section in SECTIONS else RUN_KEYS)
        bad = sorted(set(table) - set(allowed))
        if bad:
            raise ValueError(f"--config {str(path)!r}: unknown key(s) {bad} in [{section}]; "
                             f"allowed: {', '.join(sorted(allowed))}")
        out[section] = {k: config_value(path, section, k, v, yaml_file=suffix != ".toml") for k, v in table.items()}
    return out


# Keys of a config file's [run] table: the train command's options that are not spec or config fields.
RUN_KEYS = ("backend", "dataset", "data", "image_size", "image_mode", "test_fraction", "data_dir", "binarize", "device",
            "precision", "out", "tensorboard", "mlflow")


def check_logger_options(opts: dict[str, Any]) -> None:
    """The loggers' options as `resolve_train` merged them (flags, `[run]` of --config, run.json): `tensorboard`
    None or a folder, made absolute (run.json's path works from any folder); `mlflow` None (off), "" (the local
    store ./mlruns) or a tracking URI, from a flag or a config's `mlflow = true | false | "URI"`."""
    tensorboard, mlflow = opts.get("tensorboard"), opts.get("mlflow")
    if tensorboard is not None:
        if not isinstance(tensorboard, (str, os.PathLike)) or not str(tensorboard):
            raise ValueError(f"tensorboard must be a folder path (--tensorboard DIR, or tensorboard = \"DIR\" in "
                             f"[run] of --config); got {tensorboard!r}")
        opts["tensorboard"] = os.path.abspath(tensorboard)
    if isinstance(mlflow, bool):
        opts["mlflow"] = "" if mlflow else None
    elif mlflow is not None and not isinstance(mlflow, str):
        raise ValueError(f"mlflow must be true, false or a tracking URI (--mlflow [URI], or mlflow = true | \"URI\" "
                         f"in [run] of --config); got {mlflow!r}")


def image_size(text: str) -> tuple[int, int]:
    """--image-size H,W: two positive ints."""
    values = _int_tuple(text)
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected two positive ints H,W such as 28,28; got {text!r}")
    return values


def check_dataset_flags(dataset: str | None, size: Any, mode: Any, test_fraction: Any = None) -> None:
    """--image-size and --image-mode go with --data or --dataset torchvision:image-folder, --test-fraction with
    --data only: a ValueError naming the flag otherwise."""
    if test_fraction is not None:
        raise ValueError(f"--test-fraction applies to --data (your own image files); drop it for --dataset "
                         f"{dataset!r}" + (" (an image folder's test split is its test/ folder, or a fixed "
                                           "stratified 20%)" if dataset == IMAGE_FOLDER else ""))
    if (size is not None or mode is not None) and dataset != IMAGE_FOLDER:
        raise ValueError(f"--image-size and --image-mode apply to --data (your own image files) and --dataset "
                         f"{IMAGE_FOLDER}; drop them for --dataset {dataset!r}")


def run_info(checkpoint: Path) -> dict[str, Any]:
    """run.json beside a checkpoint, if `vae train` wrote one; {} otherwise."""
    path = checkpoint.parent / RUN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def run_record(opts: dict[str, Any], spec: VAESpec, config: TrainConfig, argv: list[str]) -> dict[str, Any]:
    """What run.json holds, beside a run's checkpoints (`vae train`'s --out, each backend's folder of `vae
    compare`): the run's options (RUN_KEYS and out), seed, spec, train config and command line. `run_info` reads it
    back, so that `vae evaluate`, `score`, `sample`, `reconstruct` and `plot` find the run's data without --dataset."""
    return {**opts, "seed": config.seed, "spec": spec.to_dict(), "train_config": config.to_dict(), "argv": list(argv)}


def resolve_train(args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, run.json (with --resume), --config and flags into the run's options, spec and config."""

    file = read_config_file(args.config) if args.config else {}
    flags = flag_values(args)
    run_file = file.get("run", {})
    explicit = {k: getattr(args, k) for k in RUN_KEYS if getattr(args, k, None) is not None}
    given_out = explicit.get("out") or run_file.get("out")  # str(Path("")) is ".", so this says if one was given
    out = Path(given_out or "")
    resume_from, previous = None, {}
    if args.resume and args.overwrite:
        raise ValueError("pass --resume (continue the run in --out) or --overwrite (replace it with a new run), not "
                         "both")
    if args.resume:
        if not given_out:
            raise ValueError("--resume needs --out: the folder of the run to continue")
        if launched_rank() == 0:  # another rank of a torchrun job may find the run.json rank 0 just wrote
            resume_from = resume_checkpoint(out)  # never a new run over an old one's files
        elif (out / LAST_FILE).is_file():
            resume_from = out / LAST_FILE
        if resume_from is not None:
            previous = run_info(resume_from)
        elif launched_rank() == 0:  # a folder with no run file: nothing to continue yet
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
            "device": "auto", "precision": "fp32", "tensorboard": None, "mlflow": None, **given}
    if opts["data"] is not None:
        opts["data"] = os.path.abspath(opts["data"])  # run.json's path works from any folder
        if opts["binarize"] is not None:
            raise ValueError("--binarize applies to --dataset; binarize your own images before passing --data")
    else:
        check_dataset_flags(opts["dataset"], opts["image_size"], opts["image_mode"], opts["test_fraction"])
    if opts["data_dir"] is not None:
        opts["data_dir"] = os.path.abspath(opts["data_dir"])  # as `data`: for vae evaluate/plot from any folder
    check_logger_options(opts)  # --tensorboard made absolute, `mlflow = true` of a config file as --mlflow
    if not given_out:
        source = (opts["dataset"] or Path(opts["data"]).stem or "data").replace(":", "-")
        out = Path("runs") / f"{source}-{opts['backend']}"
    opts["out"] = str(out)
    for key, choices in (("backend", sorted(BACKENDS)), ("dataset", (*DATASETS, None)), ("device", DEVICES),
                         ("precision", PRECISIONS)):
        if opts[key] not in choices:
            raise ValueError(f"{key} must be one of {', '.join(c for c in choices if c)}; got {opts[key]!r} "
                             f"(from --config)")
    for flag, value in (("--precision", opts["precision"]), ("--device", opts["device"]),
                        ("--nproc", getattr(args, "nproc", 1)), ("--threads", getattr(args, "threads", None))):
        check_applies(flag, value, opts["backend"])  # the help's "(backends: ...)" (vae_core.cli.backend_options)

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
