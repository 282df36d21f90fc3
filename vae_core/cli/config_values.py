"""The values of a `--config` file, checked for their type where they are read, so a wrong one names its table and key.

Ranges stay with `VAESpec`, `TrainConfig` and the commands; here a value is refused only when it is not of the kind
its key takes (a number, a string, a list of ints), with the key, the expected kind, the value found and a line to
write instead. Without this, `out = 3` in [run] ended in pathlib's "expected str, bytes or os.PathLike object, not
int", naming nothing.
"""
from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

from vae_core.config import TrainConfig
from vae_core.model.spec import VAESpec

FIELD_CLASSES = {"spec": VAESpec, "train": TrainConfig}
# The kind of each [run] key, and a value to show in the fix: what `vae train`'s flag of the same name takes
RUN_TYPES: dict[str, tuple[str, Any]] = {
    "backend": ("str", "torch"), "dataset": ("str", "mnist-5k"), "data": ("str", "images/"),
    "image_size": ("ints", [28, 28]), "image_mode": ("str", "L"), "test_fraction": ("number", 0.1),
    "data_dir": ("str", "data/"), "binarize": ("str", "static"), "device": ("str", "auto"),
    "precision": ("str", "fp32"), "out": ("str", "runs/r"),
    "tensorboard": ("any", None), "mlflow": ("any", None),  # checked by `check_logger_options`, with their flags
}
# Examples for the fields whose default is None
FIELD_EXAMPLES = {"input_dim": 784, "image_shape": [28, 28], "grad_clip_norm": 1.0, "checkpoint_every_steps": 500}
KIND_WORDS = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string",
              "ints": "a list of positive integers"}
# A float as YAML 1.2 writes it. PyYAML reads YAML 1.1, where a float needs a dot: `1e-3` is the string '1e-3'.
_YAML_12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def config_text(path: Path) -> str:
    """A config file's text: UTF-8, with a leading byte-order mark dropped (an editor on Windows writes one, and
    TOML would refuse it as "Invalid statement (at line 1, column 1)")."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"--config {str(path)!r} is not UTF-8 text (byte {e.start}: {e.reason}); save it as "
                         f"UTF-8") from None


def config_value(path: Path, section: str, key: str, value: Any, *, yaml_file: bool) -> Any:
    """`value` of `key` in [`section`] as the field or option takes it (a list becomes a tuple), or a ValueError
    naming the file, the table, the key, the kind expected and the value found, with a line to write instead."""
    if section in FIELD_CLASSES:
        kind, nullable = _field_kind(FIELD_CLASSES[section], key)
        default = next(f.default for f in dataclasses.fields(FIELD_CLASSES[section]) if f.name == key)
        example = FIELD_EXAMPLES.get(key, default)
    else:
        (kind, example), nullable = RUN_TYPES[key], True  # YAML's null: the option's default
    if value is None and nullable:
        return None
    if yaml_file and kind == "number" and isinstance(value, str) and _YAML_12_FLOAT.fullmatch(value.strip()):
        # `learning_rate: 1e-3` is a float in YAML 1.2, TOML, JSON and Python; PyYAML (YAML 1.1) reads it as the
        # string '1e-3'. A user means the number, so a number field of a YAML file takes it as one.
        return float(value)
    if _is_kind(value, kind):
        return tuple(value) if isinstance(value, list) else value
    got = f"{value!r} ({type(value).__name__})"
    hint = ""
    if isinstance(value, str) and kind in ("int", "number", "bool"):
        hint = (" (YAML 1.1 reads that number as a string)" if yaml_file and _YAML_12_FLOAT.fullmatch(value.strip())
                else " (a string: write it without quotes)")
    line = f"{key}: {json.dumps(example)}" if yaml_file else f"{key} = {json.dumps(example)}"
    raise ValueError(f"--config {str(path)!r}: [{section}] {key} must be {KIND_WORDS[kind]}; got {got}{hint}. "
                     f"Write e.g. {line}")


def _field_kind(cls: type, name: str) -> tuple[str, bool]:
    """The kind of a dataclass field's values ("int", "number", "bool", "str", "ints") and whether None is one."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    nullable = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if nullable else hint
    if typing.get_origin(base) is tuple:
        return "ints", nullable
    return {int: "int", float: "number", bool: "bool", str: "str"}[base], nullable


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "any":
        return True
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
