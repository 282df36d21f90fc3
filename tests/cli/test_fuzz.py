"""A fuzz test that keeps issue 32 fixed: generated commands, flags, values, files and config files, and generated
calls of the Python API, over one finished run. For every example:

- the `vae` command (`vae_core.cli.main`, in this process) exits with status 0, 1 or 2 and raises nothing (no
  traceback); a refusal (status 2) prints exactly one line on stderr, and a failure while running (status 1: a
  non-finite loss, a refused write) one line after the run's own (its start, its progress bar), as the README
  says; the API returns or raises one of the errors it documents for bad input (a ValueError, TypeError, OSError,
  CheckpointError, MemoryLimitError, ...);
- no file of the finished run is changed or removed (their SHA-256 before and after), except by `vae train
  --resume`/`--overwrite` and `fit(resume_from=..., overwrite=True)`, which get a copy of the run;
- the process's peak resident memory grows by at most MEMORY_GROWTH (Linux's VmHWM, reset before each example
  through /proc/self/clear_refs), while sizes up to 10^12 are generated; and an address-space limit
  (RLIMIT_AS, ADDRESS_HEADROOM above what the process has mapped) turns a runaway allocation into a failure of the
  example instead of a machine out of memory;
- nothing hangs: an example that runs past EXAMPLE_SECONDS (a FIFO opened for reading, say) fails.

The flags come from the real parser (`build_parser()`), so a new flag is fuzzed as soon as it exists; its values
are drawn by its type and choices, and from every other kind (a path where an int goes). Sizes that only cost time
(--epochs, --k, --nproc) are capped (WORK_LIMITS): the fuzz looks for tracebacks, hangs, lost files and memory, and
a long run the user asked for is none of them. Examples run derandomized, so CI sees the same ones every time.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

from tests.cli.test_bad_inputs import snapshot
from vae_core.cli import main
from vae_core.cli.entry import DEBUG_ENV, RUN_ERRORS, USAGE_ERRORS
from vae_core.cli.options import RUN_KEYS
from vae_core.cli.parser import build_parser
from vae_core.config import TrainConfig
from vae_core.io.run_lock import LOCK_FILE
from vae_core.model.spec import VAESpec
from vae_core.train.history import NonFiniteLossError

RUN = "@RUN@"  # in a generated path: the finished run's folder (or its copy, where the example may change the run)
CFG = "@CFG@"  # in a generated path: the example's generated config file
EXAMPLE_SECONDS = 30  # a hang: the slowest example measured took 5 s on 2 busy cores (a plot's t-SNE, a tf run)
MEMORY_GROWTH = 1 << 30  # peak RSS growth allowed per example; `vae sample -n 10000000` once took 3.7 GB
ADDRESS_HEADROOM = 4 << 30  # address space an example may add (RLIMIT_AS): a safety net for the machine
CLI_EXAMPLES, API_EXAMPLES = 400, 300
FAST = ["--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--no-plots",
        "--no-progress"]  # the finished run

# --- the commands and their flags, from the parser --------------------------------------------------------------

# Commands left out: `compare` trains both backends (seconds an example; tests/cli/test_cli.py runs it).
COMMANDS = ("train", "evaluate", "sample", "reconstruct", "plot", "score", "export")
# Flags left out, and why
EXCLUDED = {
    "--download": "fetches a dataset from the network, which CI may not have",
    "-h": "argparse's own help", "--help": "argparse's own help",
}
# Flags whose size is work, not memory: a value above the cap is replaced by the cap. A huge --epochs or --k is a
# long run the user asked for (IWAE's memory is bounded for any k by its chunks: tests/unit/test_iwae_bounded.py), and
# --nproc N > 1 starts N processes (tests/reliability/test_data_parallel.py).
WORK_LIMITS = {"--epochs": 2, "--k": 200, "--nproc": 1}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in COMMANDS}


SUBPARSERS = _subparsers()

# --- values ------------------------------------------------------------------------------------------------------

INTS = ["0", "-1", "1", "2", "3", "16", str(2**31), str(10**12), "\u0663"]  # U+0663: an Arabic-Indic 3, int() reads it
FLOATS = ["0", "-0.0", "0.5", "1", "1e-3", "nan", "inf", "-inf", "1e308", "-1", "5e-324"]
SHAPES = ["8", "8,8", "16,16", "16,8", "0,0", "-1,8", "8,8,1", "16,16,3", f"{2**31},{2**31}", f"{10**12},{10**12}",
          "1e9", ",", "8,,8"]
STRINGS = ["", " ", "x" * 300, "\u00fcn\u00efc\u00f8d\u00e9 \u2713", "-", "none", "\udcff",  # \udcff: a non-UTF-8 byte
           "torch", "tf", "digits", "mnist-5k", "fashion-mnist", "cpu", "L", "static"]
# Paths, relative to the example's scratch folder (its working directory; `make_inputs` makes them)
CHECKPOINTS = [f"{RUN}/best.safetensors", f"{RUN}/last.safetensors"]
PATHS = [RUN, *CHECKPOINTS, f"{RUN}/run.json", f"{RUN}/history.json", f"{RUN}/history.csv", f"{RUN}/plots",
         "missing.safetensors", "missing.npy", "missing/deeper", "folder", "folder.safetensors", "fifo.npy",
         "fifo.safetensors", "fifo.toml", "empty.npy", "empty.safetensors", "empty.toml", "noise.npy",
         "text.safetensors", "small.npy", "images", CFG, "x" * 300 + ".png", "\u00fcn\u00ef/out.png", "/dev/null",
         "out.png", "out.json", "out.npy", "out.csv", "newdir", "\udcff.png"]
# An output folder that `vae export` must refuse: a real export takes 5-30 s (tests/conformance/
# test_conformance_export.py runs them), so the fuzz gives export a valid checkpoint only with one of these.
TAKEN = [RUN, *CHECKPOINTS, f"{RUN}/run.json", "fifo.npy", "empty.npy", "text.safetensors", "images", "/dev/null",
         "x" * 300]
ANY = [*INTS, *FLOATS, *SHAPES, *STRINGS, *PATHS]


def _typed(action: argparse.Action) -> list[str]:
    """The values of the action's own kind."""
    kind = action.type
    name = getattr(kind, "__qualname__", "")
    if kind is int:
        return INTS
    if kind is float:
        return FLOATS
    if kind in (None, str, Path):
        return [*PATHS, *STRINGS]
    if any(word in name for word in ("tuple", "shape", "size")):
        return [*SHAPES, "none"]
    return [*INTS, *FLOATS, "none", "off"]  # `_optional` (an int or float, or none)


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    """A value for the action: mostly of its kind (a choice, an int, a path), else of any kind."""
    own = list(action.choices) if action.choices is not None else _typed(action)
    mostly = [st.just(CFG)] * 4 if action.dest == "config" else []  # --config: a generated file half of the time
    return st.one_of(*mostly, *[st.sampled_from(own)] * 4, st.sampled_from(ANY))


def _option(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:  # store_true, --x/--no-x
        return flag.map(lambda f: [f])
    pair = st.tuples(flag, _value(action)).map(list)
    return st.one_of(flag.map(lambda f: [f]), pair) if action.nargs == "?" else pair


# --- config files ----------------------------------------------------------------------------------------------------

CONFIG_VALUES = [0, -1, 1, 2, 16, 2**31, 10**12, 0.5, 1e-3, math.nan, math.inf, 1e308, -0.0, True, False, "",
                 "x" * 300, "torch", "tf", "digits", "mnist-5k", "L", "RGB", "static", "cpu", "cuda", "bf16", RUN,
                 "images", "noise.npy", "small.npy", [16], [0], [10**12], [8, 8], [16, 16], [], ["16"], None]
CONFIG_KEYS = {"spec": [f.name for f in dataclasses.fields(VAESpec)],
               "train": [f.name for f in dataclasses.fields(TrainConfig)], "run": list(RUN_KEYS)}


def _clamp_config(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    train = tables.get("train", {})
    epochs = train.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > WORK_LIMITS["--epochs"]:
        train["epochs"] = WORK_LIMITS["--epochs"]
    return tables


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _config_bytes(tables: dict[str, dict[str, Any]], suffix: str, twist: str) -> bytes:
    """The tables as TOML (None values left out: TOML has no null) or YAML, with a twist: none, a byte-order mark,
    the first key given twice, bytes that are no UTF-8, or a document that is no table."""
    if suffix == ".toml":
        lines = []
        for section, table in tables.items():
            lines += [f"[{section}]", *(f"{k} = {_toml(v)}" for k, v in table.items() if v is not None)]
    else:
        import yaml

        lines = yaml.safe_dump(tables, allow_unicode=True).splitlines() if tables else []
    if twist == "twice" and len(lines) > 1:
        lines.append(lines[1])
    text = "\n".join(lines) + "\n"
    if twist == "not a table":
        text = "- 1\n- 2\n" if suffix != ".toml" else "= 1\n"
    data = text.encode("utf-8", "surrogateescape")
    return {"bom": b"\xef\xbb\xbf" + data, "not utf-8": b"\xff\xfe" + data}.get(twist, data)


@st.composite
def config_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(the file's name, its bytes)."""
    tables = draw(st.dictionaries(
        st.sampled_from([*CONFIG_KEYS, "bogus"]),
        st.dictionaries(st.sampled_from([*CONFIG_KEYS["spec"], *CONFIG_KEYS["train"], *RUN_KEYS, "bogus"]),
                        st.sampled_from(CONFIG_VALUES), max_size=4),
        max_size=3))
    suffix = draw(st.sampled_from([".toml", ".toml", ".yaml", ".yml", ".json"]))
    twist = draw(st.sampled_from(["none"] * 6 + ["bom", "twice", "not utf-8", "not a table"]))
    return f"cfg{suffix}", _config_bytes(_clamp_config(tables), suffix, twist)


# --- CLI examples ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CliExample:
    argv: tuple[str, ...]  # with RUN and CFG unresolved
    config: tuple[str, bytes] | None  # the config file, if the argv names it

    @property
    def changes_run(self) -> bool:
        """`vae train --resume/--overwrite` may change the run: it gets a copy."""
        return self.argv[0] == "train" and bool({"--resume", "--overwrite"} & set(self.argv))


def _cap_work(tokens: list[str]) -> list[str]:
    out = list(tokens)
    for i, token in enumerate(out[:-1]):
        if token in WORK_LIMITS:
            with contextlib.suppress(ValueError):
                if int(out[i + 1]) > WORK_LIMITS[token]:
                    out[i + 1] = str(WORK_LIMITS[token])
    return out


# `vae train`'s fastest run, for what an example leaves unset (in its flags and its config file): the digits, one
# epoch of a 16-unit model; and never the plots (`vae plot` draws the same ones).
FAST_DEFAULTS = (({"--dataset", "--data"}, ["--dataset", "digits"]), ({"--hidden-dims"}, ["--hidden-dims", "16"]),
                 ({"--latent-dim"}, ["--latent-dim", "2"]), ({"--epochs"}, ["--epochs", "1"]))


def _config_tables(config: tuple[str, bytes] | None) -> dict[str, Any]:
    """The tables of a generated config file, as far as it can be read ({} otherwise)."""
    if config is None:
        return {}
    with contextlib.suppress(Exception):  # a file the example made unreadable on purpose
        text = config[1].decode("utf-8-sig")
        if config[0].endswith(".toml"):
            import tomllib

            return tomllib.loads(text)
        import yaml

        tables = yaml.safe_load(text)
        return tables if isinstance(tables, dict) else {}
    return {}


def _fast_train(tokens: list[str], config: tuple[str, bytes] | None) -> list[str]:
    given = set(tokens) | {f"--{key.replace('_', '-')}" for table in _config_tables(config).values()
                           if isinstance(table, dict) for key in table}
    added = [word for flags, default in FAST_DEFAULTS if not flags & given for word in default]
    return [*tokens, *added, "--no-plots"]


@st.composite
def cli_examples(draw: st.DrawFn) -> CliExample:
    command = draw(st.sampled_from(COMMANDS))
    parser = SUBPARSERS[command]
    tokens = [command]
    positionals = [a for a in parser._actions if not a.option_strings]
    for action in positionals:  # CHECKPOINT: a valid one half of the time, so the checks after it run too
        tokens.append(draw(st.one_of(st.sampled_from(CHECKPOINTS), _value(action))))
    options = [a for a in parser._actions if a.option_strings and not set(a.option_strings) & set(EXCLUDED)]
    required = [a for a in options if a.required]  # always given: argparse refuses their absence, and that's all
    chosen = draw(st.lists(st.sampled_from([a for a in options if not a.required]), max_size=4, unique_by=id))
    for action in required + chosen:
        tokens += draw(_option(action))
    if command == "export" and tokens[1] in CHECKPOINTS:  # a valid checkpoint: an --out that must be refused
        tokens = [t for i, t in enumerate(tokens) if t != "--out" and (i == 0 or tokens[i - 1] != "--out")]
        tokens += ["--out", draw(st.sampled_from(TAKEN))]
    stray = draw(st.sampled_from([None] * 16 + ["--bogus", "stray", "-", "--"]))  # now and then, a stray word
    if stray is not None:
        tokens.insert(draw(st.integers(1, len(tokens))), stray)
    config = draw(config_files()) if CFG in tokens else None
    if command == "train":
        tokens = _fast_train(tokens, config)
    return CliExample(tuple(_cap_work(tokens)), config)


# --- API examples ----------------------------------------------------------------------------------------------------

API_VALUES = [0, -1, 1, 2, 16, 2**31, 10**12, 2**64, 0.5, 1e-3, math.nan, math.inf, -math.inf, 1e308, -0.0, True,
              False, None, "", "16", "x" * 300, (16,), (0,), (2**31,), (16, 16), [16], (), (8, 8), (8, 8, 1),
              np.int64(16), np.int32(2), np.uint8(200), np.float32(0.5), np.float64(math.nan), np.bool_(True),
              np.array([16]), b"16", 1 + 2j, Fraction(1, 2), "mlp", "conv", "bernoulli", "gaussian"]
API_PATHS = [*PATHS, None, 3, b"bytes.safetensors", Path("folder")]


X_KINDS: dict[str, Callable[[np.ndarray], Any]] = {
    "good": lambda x: x, "nan": lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x),
    "masked": lambda x: np.ma.masked_array(x, mask=x > 0.9), "int64": lambda x: (x > 0.5).astype(np.int64),
    "uint8": lambda x: (x * 255).astype(np.uint8), "wrong width": lambda x: x[:, :63],
    "images": lambda x: x.reshape(20, 8, 8), "lists": lambda x: x.tolist(), "empty": lambda x: x[:0],
    "strings": lambda x: x.astype(str), "huge": lambda x: x * np.float32(1e30), "a path": lambda x: "small.npy",
    "none": lambda x: None,
}


def _x(kind: str) -> Any:
    """Training data of a kind (X_KINDS): 20 rows of the 8x8 digits' shape, or something near it."""
    return X_KINDS[kind](np.random.default_rng(0).random((20, 64), dtype=np.float32))


@dataclasses.dataclass(frozen=True)
class ApiExample:
    call: str  # "TrainConfig", "VAESpec", "read_checkpoint", "load_checkpoint", "fit"
    kwargs: dict[str, Any]

    @property
    def changes_run(self) -> bool:
        return self.call == "fit" and (self.kwargs["overwrite"] is True or self.kwargs["resume_from"] is not None)


def _fields(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    names = [f.name for f in dataclasses.fields(cls)]
    return st.dictionaries(st.sampled_from([*names, "bogus"]), st.sampled_from(API_VALUES), max_size=4)


def _train_fields() -> st.SearchStrategy[dict[str, Any]]:
    def cap(kwargs: dict[str, Any]) -> dict[str, Any]:
        epochs = kwargs.get("epochs")
        if isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool) and epochs > 2:
            kwargs["epochs"] = 2
        return kwargs
    return _fields(TrainConfig).map(cap)


api_examples = st.one_of(
    _train_fields().map(lambda kw: ApiExample("TrainConfig", kw)),
    _fields(VAESpec).map(lambda kw: ApiExample("VAESpec", kw)),
    st.sampled_from(API_PATHS).map(lambda p: ApiExample("read_checkpoint", {"path": p})),
    st.tuples(st.sampled_from(API_PATHS), st.sampled_from(["torch", "tf", "jax", "", None])).map(
        lambda t: ApiExample("load_checkpoint", {"path": t[0], "backend": t[1]})),
    st.fixed_dictionaries({
        "config": _train_fields(),
        "x": st.sampled_from(["good", *X_KINDS]),
        "out_dir": st.sampled_from([None, RUN, RUN, "newdir", "folder", "empty.npy", "fifo.npy",
                                    f"{RUN}/best.safetensors", "x" * 300]),
        "resume_from": st.sampled_from([None, None, None, f"{RUN}/last.safetensors", f"{RUN}/best.safetensors",
                                        "missing.safetensors", "text.safetensors", "folder", "fifo.safetensors", 3]),
        "overwrite": st.sampled_from([False, False, True, "yes", 1, None]),
    }).map(lambda kw: ApiExample("fit", kw)),
)

# --- what each example runs in ---------------------------------------------------------------------------------------

_PNG: list[bytes] = []


def _png() -> bytes:
    """An 8x8 grey PNG (the digits' size), made once."""
    if not _PNG:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(buffer, format="PNG")
        _PNG.append(buffer.getvalue())
    return _PNG[0]


def make_inputs(tmp: Path, config: tuple[str, bytes] | None, run: Path) -> None:
    """The files every generated path names (PATHS), in the example's scratch folder."""
    rng = np.random.default_rng(0)
    for name in ("folder", "folder.safetensors", "images"):
        (tmp / name).mkdir()
    for name in ("fifo.npy", "fifo.safetensors", "fifo.toml"):
        os.mkfifo(tmp / name)  # opening one for reading blocks until a writer comes: a hang, unless refused
    for name in ("empty.npy", "empty.safetensors", "empty.toml"):
        (tmp / name).touch()
    (tmp / "noise.npy").write_bytes(rng.bytes(256))
    (tmp / "text.safetensors").write_text("a text file renamed\n")
    np.save(tmp / "small.npy", rng.integers(0, 256, (12, 8, 8), dtype=np.uint8))
    with contextlib.suppress(ImportError):  # Pillow: the data extra
        for i in range(3):
            (tmp / "images" / f"{i}.png").write_bytes(_png())
    if config is not None:
        (tmp / config[0]).write_bytes(config[1].replace(RUN.encode(), os.fsencode(run)))


def resolve(value: Any, run: Path, config: tuple[str, bytes] | None) -> Any:
    if not isinstance(value, str):
        return value
    return value.replace(RUN, str(run)).replace(CFG, config[0] if config else "cfg.toml")


class ExampleTimeout(BaseException):
    """Raised by SIGALRM in the example: not an Exception, so no `except Exception` of the code swallows it."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise ExampleTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _status_kb(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


@contextlib.contextmanager
def memory_watch() -> Iterator[list[int]]:
    """Yields a list that receives, after the block, how far the process's peak RSS rose in it (bytes): Linux's
    VmHWM, reset to the current RSS first (/proc/self/clear_refs); elsewhere the growth of ru_maxrss. The address
    space is limited meanwhile to ADDRESS_HEADROOM above what is mapped now, so a runaway allocation fails fast."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS to the current RSS
        start = _status_kb("VmRSS")
    except OSError:
        start = None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limit = resource.getrlimit(resource.RLIMIT_AS)
    mapped = _status_kb("VmSize")
    if mapped is not None:
        soft = mapped * 1024 + ADDRESS_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (soft if limit[1] == resource.RLIM_INFINITY else min(soft, limit[1]),
                                                limit[1]))
    growth: list[int] = []
    try:
        yield growth
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)
        peak = _status_kb("VmHWM") if start is not None else None
        if peak is not None:
            growth.append((peak - start) * 1024)
        else:  # kilobytes on Linux, bytes on macOS
            scale = 1 if sys.platform == "darwin" else 1024
            growth.append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss) * scale)


@dataclasses.dataclass
class Outcome:
    result: Any = None  # what the call returned (the CLI: its exit status)
    error: BaseException | None = None  # what it raised: a traceback, for the CLI
    hung: bool = False  # still running after EXAMPLE_SECONDS
    trace: str = ""
    out: str = ""
    err: str = ""
    growth: int = 0
    seconds: float = 0.0


def invoke(call: Callable[[], Any]) -> Outcome:
    """Run `call` as an example: stdout and stderr captured, time limited, peak memory measured, VAE_CORE_DEBUG
    unset (it turns tracebacks on)."""
    outcome, out, err = Outcome(), io.StringIO(), io.StringIO()
    debug = os.environ.pop(DEBUG_ENV, None)
    start = time.perf_counter()
    try:
        with memory_watch() as growth, time_limit(EXAMPLE_SECONDS), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                outcome.result = call()
            except SystemExit as e:  # argparse's errors, as the console script would exit
                outcome.result = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception as e:
                outcome.error, outcome.trace = e, traceback.format_exc()
    except ExampleTimeout:
        outcome.hung = True
    finally:
        if debug is not None:
            os.environ[DEBUG_ENV] = debug
    outcome.out, outcome.err, outcome.growth = out.getvalue(), err.getvalue(), growth[0]
    outcome.seconds = time.perf_counter() - start
    return outcome


def run_files(run: Path) -> dict[str, str]:
    """The run's files and folders with their hashes; its lock file left out (a refused `vae train --out RUN`
    takes the lock, and the file holds its last holder's pid)."""
    return {name: digest for name, digest in snapshot(run).items() if name != LOCK_FILE}


@contextlib.contextmanager
def scratch(finished: tuple[Path, Path], copy: bool, config: tuple[str, bytes] | None) -> Iterator[Path]:
    """The run the example sees (the shared one, or a copy of it), in a new scratch folder that holds PATHS' files
    and is the working directory meanwhile. Afterwards the shared run is as it was: one that an example changed or
    added to (`vae plot`'s plots/, an output named into it) is restored from the pristine copy, so that one
    failure does not fail every example after it."""
    shared, pristine = finished
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="vae-fuzz-") as name:
        tmp = Path(name)
        run = Path(shutil.copytree(shared, tmp / "run-copy")) if copy else shared
        make_inputs(tmp, config, run)
        os.chdir(tmp)
        try:
            yield run
        finally:
            os.chdir(cwd)
            if run_files(shared) != run_files(pristine):
                shutil.rmtree(shared)
                shutil.copytree(pristine, shared)


# --- the tests -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a finished `vae train` run of the digits, a pristine copy of it). Each installed backend has trained and
    evaluated once first, so that its one-time costs (TensorFlow's first training step: about 20 s and 600 MiB on
    2 cores) count against no example's time and memory."""
    pytest.importorskip("torch")
    from vae_core.registry import BACKENDS

    from tests.conftest import missing_framework

    root = tmp_path_factory.mktemp("fuzz")
    for name in BACKENDS:
        if missing_framework(name) is None:
            warm = root / f"warm-{name}"
            assert main(["train", "--out", str(warm), "--backend", name, *FAST]) == 0
            assert main(["evaluate", str(warm / "best.safetensors"), "--k", "2"]) == 0
    run = root / "run"
    assert main(["train", "--out", str(run), "--backend", "torch", *FAST]) == 0
    return run, Path(shutil.copytree(run, root / "pristine"))


def _check(what: str, outcome: Outcome, before: dict[str, str], after: dict[str, str], kept: bool) -> None:
    """No hang; peak memory bounded; and where the run must be `kept`, none of its files changed or removed."""
    assert not outcome.hung, f"{what}: still running after {EXAMPLE_SECONDS} s: a hang\nstderr: {outcome.err}"
    changed = sorted(name for name in before if after.get(name) != before[name])
    assert not (kept and changed), f"{what}: changed or removed {changed} of the finished run\nstderr: {outcome.err}"
    assert outcome.growth <= MEMORY_GROWTH, (f"{what}: peak memory grew by {outcome.growth / 2**20:.0f} MiB "
                                             f"(allowed {MEMORY_GROWTH / 2**20:.0f} MiB)\nstderr: {outcome.err}")


# 400 examples: about 35 s on 2 busy cores (most are refused in milliseconds; a run, a plot or a tf step takes 1-5 s)
@settings(max_examples=CLI_EXAMPLES, deadline=None, derandomize=True, database=None)
@given(example=cli_examples())
def test_cli_survives_generated_arguments(finished, one_torch_thread, example: CliExample):
    with scratch(finished, example.changes_run, example.config) as run:
        argv = [resolve(token, run, example.config) for token in example.argv]
        before = run_files(run)
        outcome = invoke(lambda: main(argv))
        after = run_files(run)
    what = f"vae {' '.join(map(repr, argv))} (exit {outcome.result})"
    event(f"vae {example.argv[0]}: exit {outcome.result}")  # --hypothesis-show-statistics: what the examples did
    event(f"{max(1, round(outcome.seconds))} s" if outcome.seconds >= 0.5 else "< 0.5 s")
    assert outcome.error is None, f"{what}: a traceback\n{outcome.trace}"
    # the shared run is kept always; a copy given to --resume/--overwrite when they were refused (exit 2)
    _check(what, outcome, before, after, kept=not example.changes_run or outcome.result == 2)
    assert outcome.result in (0, 1, 2), f"{what}: exit status {outcome.result!r}\nstderr: {outcome.err}"
    assert "Traceback" not in outcome.err, f"{what}: a traceback on stderr\n{outcome.err}"
    lines = outcome.err.rstrip("\n").split("\n")
    if outcome.result == 2:  # a refusal: one line, and nothing before it
        assert len(lines) == 1 and lines[0].strip(), f"{what}: {len(lines)} lines on stderr\n{outcome.err}"
    if outcome.result == 1:  # a failure while running (README): one line, after the run's own (its start, its bar)
        assert lines[-1].startswith("vae ") and not any("error" in line for line in lines[:-1]), \
            f"{what}: more than one error line on stderr\n{outcome.err}"


# The errors the API documents for bad input, and for a run that fails (a non-finite loss, a refused write)
API_ERRORS = (*USAGE_ERRORS, *RUN_ERRORS, NonFiniteLossError, OSError)


def _plain(value: Any) -> bool:
    """Whether `value` is made of plain Python values (no NumPy scalar): what a config or spec stores."""
    if isinstance(value, (list, tuple)):
        return all(map(_plain, value))
    if isinstance(value, dict):
        return all(map(_plain, value.values()))
    return type(value) in (int, float, bool, str, type(None))


def api_call(example: ApiExample, run: Path) -> Callable[[], Any]:
    import vae_core

    kw = {k: resolve(v, run, None) for k, v in example.kwargs.items()}
    if example.call == "TrainConfig":
        return lambda: TrainConfig(**kw)
    if example.call == "VAESpec":
        # a spec that is accepted is built too: a huge one must be refused by the memory check, not allocated
        return lambda: vae_core.build("torch", VAESpec(**kw), seed=0)
    if example.call == "read_checkpoint":
        return lambda: vae_core.read_checkpoint(kw["path"])
    if example.call == "load_checkpoint":
        return lambda: vae_core.load_checkpoint(kw["path"], kw["backend"])

    def fit() -> Any:
        model = vae_core.build("torch", VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2), seed=0)
        return vae_core.fit(model, _x(kw["x"]), None, TrainConfig(**kw["config"]), out_dir=kw["out_dir"],
                            resume_from=kw["resume_from"], overwrite=kw["overwrite"], progress=False)
    return fit


@settings(max_examples=API_EXAMPLES, deadline=None, derandomize=True, database=None)
@given(example=api_examples)
def test_api_survives_generated_calls(finished, one_torch_thread, example: ApiExample):
    with scratch(finished, example.changes_run, None) as run:
        before = run_files(run)
        outcome = invoke(api_call(example, run))
        after = run_files(run)
    what = f"{example.call}({example.kwargs!r})"
    error = outcome.error
    event(f"{example.call}: {type(error).__name__ if error else 'returned'}")
    assert error is None or isinstance(error, API_ERRORS), f"{what}: raised\n{outcome.trace}"
    assert error is None or str(error).strip(), f"{what}: {type(error).__name__} with no message"
    # the shared run is kept always; a copy given to resume_from/overwrite when the call was refused
    _check(what, outcome, before, after, kept=not example.changes_run or isinstance(error, USAGE_ERRORS))
    if error is None and example.call == "TrainConfig":  # NumPy scalars are stored as plain numbers
        assert _plain(outcome.result.to_dict()), f"{what}: stored {outcome.result.to_dict()!r}"
    if error is None and example.call == "VAESpec":
        spec = VAESpec(**example.kwargs)
        assert _plain(spec.to_dict()), f"{what}: stored {spec.to_dict()!r}"


def test_train_without_out_writes_into_runs(tmp_path, monkeypatch, capsys):
    """Found by the fuzz: `vae train` without --out trained into the working folder ("-> ./"), as str(Path("")) is
    ".", not "": the default runs/<dataset>-<backend> was never taken, and `--resume` without --out resumed "."."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    assert main(["train", *FAST]) == 0
    assert (tmp_path / "runs" / "digits-torch" / "best.safetensors").is_file()
    assert not (tmp_path / "best.safetensors").exists()
    capsys.readouterr()
    assert main(["train", "--resume", *FAST]) == 2
    assert capsys.readouterr().err == "vae train: error: --resume needs --out: the folder of the run to continue\n"
