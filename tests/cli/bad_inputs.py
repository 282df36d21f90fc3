"""The catalogue of bad inputs: each case, the error a user gets, and a fix named in the message.

Used by tests/cli/test_bad_inputs.py (which asserts every case) and scripts/make_bad_inputs_table.py (which writes
docs/bad_inputs.md from the same cases, with the messages they actually produce).

`prepare(tmp)` writes whatever files the case needs into the empty folder `tmp` and returns, for a Python case,
a function that must raise `error`, and for a CLI case the argv for `vae_core.cli.main`, which must exit with
status 2 and print one line. `match` is a regex the message must contain: what was wrong and how to fix it.
The failing call must leave `tmp` exactly as `prepare` left it: nothing written, nothing lost.
"""
from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vae_core import CheckpointError, TrainConfig, VAESpec

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2)  # the 8x8 digits
X = np.random.default_rng(0).random((20, 64), dtype=np.float32)


@dataclass(frozen=True)
class Case:
    id: str  # short name, the test id
    where: str  # "python" or "cli"
    given: str  # the bad input, in words
    prepare: Callable[[Path], Any]  # python: returns a function that raises; cli: returns argv
    error: type[BaseException]  # the exception (python) or the error behind the one line (cli)
    match: str  # regex the message must contain


def _fit(x: Any, **kwargs: Any) -> None:
    from vae_core import build, fit

    fit(build("torch", SPEC, seed=0), x, None, TrainConfig(epochs=1), progress=False, **kwargs)


def _with(value: float) -> np.ndarray:
    x = X.copy()
    x[3, 5] = value
    return x


def _good_checkpoint(tmp: Path, name: str = "good.safetensors", spec: VAESpec = SPEC) -> Path:
    from vae_core import build, save_checkpoint

    return save_checkpoint(tmp / name, build("torch", spec, seed=0), epoch=1)


def _truncated(tmp: Path) -> Path:
    path = _good_checkpoint(tmp)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _float64_checkpoint(tmp: Path) -> Path:
    from safetensors.numpy import save_file

    from vae_core import init_weights
    from vae_core.io.checkpoint import METADATA_KEY

    weights = {k: v.astype(np.float64) for k, v in init_weights(SPEC, 0).items()}
    path = tmp / "f64.safetensors"
    save_file(weights, str(path), metadata={METADATA_KEY: json.dumps(
        {"schema_version": 1, "spec": SPEC.to_dict(), "epoch": 0})})  # schema 1: no checksums to write
    return path


class Unpickled:
    """Unpickling this writes a marker file, which the test then looks for."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle(tmp: Path) -> Path:
    path = tmp / "model.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": Unpickled(str(tmp.parent / f"{tmp.name}-UNPICKLED"))}))
    return path


def _huge_header(tmp: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}}).encode()
    path = tmp / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    return path


def _corrupt_idx_dir(tmp: Path) -> Path:
    folder = tmp / "idx"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)  # a header cut short
    return folder


def _a_file(tmp: Path) -> Path:
    path = tmp / "not-a-folder"
    path.write_text("x")
    return path


def _resume_other_spec(tmp: Path) -> Callable[[], None]:
    path = _good_checkpoint(tmp, spec=SPEC.replace(latent_dim=3))
    return lambda: _fit(X, resume_from=path)


def _load(path_of: Callable[[Path], Path]) -> Callable[[Path], Callable[[], None]]:
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core import load_checkpoint

        path = path_of(tmp)
        return lambda: load_checkpoint(path, "torch")
    return prepare


def _dataset(**kwargs: Any) -> Callable[[Path], Callable[[], None]]:
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core.data import load_dataset

        args = {k: (v(tmp) if callable(v) else v) for k, v in kwargs.items()}
        return lambda: load_dataset(**args)
    return prepare


class _Items:
    """A map-style dataset of (example, label) items over the rows of X; `bad` gives item i's example instead (an
    exception: raised), `shrinks_at` drops the last item once that item has been read, and `n` overrides len."""

    def __init__(self, bad: dict[int, Any] | None = None, shrinks_at: int | None = None, n: int | None = None):
        self.bad, self.shrinks_at, self.n = bad or {}, shrinks_at, len(X) if n is None else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if i == self.shrinks_at:
            self.n -= 1
        example = self.bad.get(i, X[i % len(X)])
        if isinstance(example, BaseException):
            raise example
        return example, 0


def _fit_items(train: Any, val: Any = None, **kwargs: Any) -> None:
    from vae_core import build, fit

    fit(build("torch", SPEC, seed=0), train, val, TrainConfig(epochs=1, batch_size=8), progress=False, **kwargs)


def _loader() -> Any:
    import torch

    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X)), batch_size=4)


PY, CLI = "python", "cli"
TRAIN = ["train", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--no-plots",
         "--no-progress"]

CASES: list[Case] = [
    # ------------------------------------------------------------ data given to fit / evaluate
    Case("nan-pixels", PY, "a NaN pixel", lambda t: lambda: _fit(_with(np.nan)), ValueError, r"NaN or inf .* 1 example"),
    Case("inf-pixels", PY, "an inf pixel", lambda t: lambda: _fit(_with(np.inf)), ValueError, r"NaN or inf"),
    Case("outside-0-1", PY, "pixel 1.5 with a Bernoulli decoder", lambda t: lambda: _fit(_with(1.5)), ValueError,
         r"must lie in \[0, 1\] for a Bernoulli decoder"),
    Case("wrong-dim", PY, "x of shape (20, 100) for input_dim 64", lambda t: lambda: _fit(X[:, :50].repeat(2, 1)),
         ValueError, r"shape \(N, 64\) or \(N, 8, 8, 1\) or \(N, 8, 8\) .* got \(20, 100\)\. Build the model with a VAESpec"),
    Case("1-d", PY, "a 1-D array of 64 pixels", lambda t: lambda: _fit(X[0]), ValueError, r"shape \(N, 64\) .* x\.reshape\(1, -1\)"),
    Case("empty", PY, "an empty (0, 64) array", lambda t: lambda: _fit(X[:0]), ValueError, r"empty .* at least one"),
    Case("int-dtype", PY, "int32 pixels", lambda t: lambda: _fit(X.astype(np.int32)), TypeError,
         r"float32, float64 or uint8 .* got dtype int32"),
    Case("list", PY, "a Python list instead of an array", lambda t: lambda: _fit(X.tolist()), TypeError,
         r"NumPy array .* np.asarray"),
    # ------------------------------------------------------------ spec and config fields
    *[Case(f"spec-{field}", PY, f"VAESpec({field}={value!r})", (lambda f, v: lambda t: lambda: VAESpec(**{f: v}))(field, value),
           ValueError, rf"VAESpec\.{field} must be")
      for field, value in [("input_dim", 0), ("hidden_dims", (400, 0)), ("hidden_dims", "400"), ("latent_dim", 0),
                           ("likelihood", "poisson"), ("beta", -1.0), ("image_shape", (28, 28, 0)),
                           ("architecture", "resnet"), ("conv_channels", (32, -1)), ("kernel_size", 1)]],
    Case("conv-image-too-small", PY, "VAESpec(architecture='conv', image_shape=(3, 3))",
         lambda t: lambda: VAESpec(architecture="conv", image_shape=(3, 3)), ValueError,
         r"VAESpec\.image_shape must be at least 4 x 4 pixels for 2 stride-2 convolutions"),
    *[Case(f"config-{field}", PY, f"TrainConfig({field}={value!r})",
           (lambda f, v: lambda t: lambda: TrainConfig(**{f: v}))(field, value), ValueError, rf"TrainConfig\.{field} must be")
      for field, value in [("batch_size", 0), ("epochs", 0), ("learning_rate", 0.0), ("adam_beta1", 1.0),
                           ("adam_beta2", -0.1), ("adam_eps", 0.0), ("seed", -1), ("grad_clip_norm", 0.0),
                           ("reduce_lr_on_plateau", "yes"), ("lr_plateau_factor", 1.0), ("lr_plateau_patience", -1),
                           ("early_stopping", 1), ("early_stopping_patience", 0), ("dynamic_binarization", "no"),
                           ("checkpoint_every_steps", 0)]],
    Case("unknown-backend", PY, 'build("jax")', lambda t: lambda: __import__("vae_core").build("jax"), ValueError,
         r"backend must be one of \['tf', 'torch'\]; got 'jax'"),
    # ------------------------------------------------------------ checkpoints
    Case("other-spec", PY, "resume from a checkpoint of another spec", _resume_other_spec, CheckpointError,
         r"spec .* build the model from the checkpoint's spec"),
    Case("truncated-ckpt", PY, "a checkpoint cut short by 100 bytes", _load(_truncated), CheckpointError,
         r"not a readable safetensors checkpoint"),
    Case("float64-ckpt", PY, "weights stored as float64", _load(_float64_checkpoint), CheckpointError,
         r"expected shape \(64, 16\) float32, found shape \(64, 16\) float64"),
    Case("not-safetensors", PY, "a text file named .safetensors",
         _load(lambda t: (t / "notes.safetensors", (t / "notes.safetensors").write_text("hello"))[0]),
         CheckpointError, r"not a readable safetensors checkpoint"),
    Case("pickle", PY, "a pickle renamed to .safetensors (never unpickled)", _load(_pickle), CheckpointError,
         r"not a readable safetensors checkpoint"),
    Case("huge-header", PY, "a safetensors header claiming 4 TiB", _load(_huge_header), CheckpointError,
         r"not a readable safetensors checkpoint"),
    Case("missing-ckpt", PY, "a checkpoint path that does not exist", _load(lambda t: t / "nope.safetensors"),
         FileNotFoundError, r"does not exist; pass the path"),
    Case("out-dir-is-file", PY, "fit(out_dir=) inside a regular file",
         lambda t: (lambda path: lambda: _fit(X, out_dir=path))(_a_file(t) / "run"), NotADirectoryError,
         r"out_dir .* is inside a file, not a folder"),
    Case("fp64-out-dir", PY, "fit(precision=\"fp64\", out_dir=...)",
         lambda t: lambda: _fit(X, precision="fp64", out_dir=t / "run"), ValueError,
         r"precision='fp64' takes no out_dir or resume_from .* fp32 for runs you keep"),
    # ------------------------------------------------------------ datasets
    Case("unknown-dataset", PY, 'load_dataset("cifar")', _dataset(name="cifar"), ValueError,
         r"load_dataset\.name must be one of"),
    Case("missing-offline", PY, "MNIST not on disk, no download", _dataset(name="mnist", data_dir=lambda t: t),
         FileNotFoundError, r"IDX files not found .* data_dir"),
    Case("corrupt-idx", PY, "IDX files with a truncated header", _dataset(name="mnist", data_dir=_corrupt_idx_dir),
         ValueError, r"expected a 16-byte header"),
    # ------------------------------------------------------------ the vae command
    Case("cli-backend", CLI, "vae train --backend jax", lambda t: [*TRAIN, "--backend", "jax", "--out", str(t / "o")],
         SystemExit, r"argument --backend: invalid choice: 'jax'"),
    Case("cli-likelihood", CLI, "vae train --likelihood poisson",
         lambda t: [*TRAIN, "--likelihood", "poisson", "--out", str(t / "o")], SystemExit,
         r"argument --likelihood: invalid choice"),
    Case("cli-spec-field", CLI, "vae train --latent-dim 0", lambda t: [*TRAIN, "--latent-dim", "0", "--out",
                                                                        str(t / "o")],
         ValueError, r"VAESpec\.latent_dim must be an int >= 1; got 0"),
    Case("cli-config-field", CLI, "vae train --learning-rate -1",
         lambda t: [*TRAIN, "--learning-rate", "-1", "--out", str(t / "o")], ValueError,
         r"TrainConfig\.learning_rate must be a number in \(0\.0, inf\); got -1\.0"),
    Case("cli-not-an-int", CLI, "vae train --epochs many", lambda t: [*TRAIN, "--epochs", "many"], SystemExit,
         r"argument --epochs: invalid int value: 'many'"),
    Case("cli-config-key", CLI, "a --config file with a misspelt key",
         lambda t: [*TRAIN, "--out", str(t / "o"), "--config",
                    str((t / "c.toml", (t / "c.toml").write_text("[train]\nepoch = 3\n"))[0])],
         ValueError, r"unknown key\(s\) \['epoch'\] in \[train\]"),
    Case("cli-out-is-file", CLI, "vae train --out FILE", lambda t: [*TRAIN, "--out", str(_a_file(t))],
         NotADirectoryError, r"--out .* is a file; pass a folder"),
    Case("cli-pickle", CLI, "vae evaluate on a pickle renamed to .safetensors",
         lambda t: ["evaluate", str(_pickle(t))], CheckpointError, r"not a readable safetensors checkpoint"),
    Case("cli-truncated", CLI, "vae evaluate on a truncated checkpoint", lambda t: ["evaluate", str(_truncated(t))],
         CheckpointError, r"not a readable safetensors checkpoint"),
    Case("cli-resume-spec", CLI, "vae train --resume with another --latent-dim",
         lambda t: ["train", "--out", str(_good_checkpoint(t, "last.safetensors").parent), "--resume",
                    "--latent-dim", "3", "--dataset", "digits", "--no-plots"],
         ValueError, r"the spec cannot change on resume, but {'latent_dim': 3} was asked for\. Drop those flags"),
    Case("cli-missing-data", CLI, "vae train --dataset mnist offline",
         lambda t: [*TRAIN, "--dataset", "mnist", "--data-dir", str(t), "--out", str(t / "o")], FileNotFoundError,
         r"IDX files not found"),
    Case("cli-corrupt-idx", CLI, "vae train --data-dir with corrupt IDX files",
         lambda t: [*TRAIN, "--dataset", "mnist", "--data-dir", str(_corrupt_idx_dir(t)), "--out", str(t / "o")],
         ValueError, r"expected a 16-byte header"),
    Case("cli-sample-n", CLI, "vae sample -n 0", lambda t: ["sample", str(_good_checkpoint(t)), "-n", "0",
                                                             "-o", str(t / "s.png")],
         ValueError, r"-n must be an int >= 1; got 0"),
    # ------------------------------------------------------------ data-parallel
    Case("world-size-without-launcher", PY, "fit with WORLD_SIZE=2 set but no torchrun",
         lambda t: lambda: _with_env({"WORLD_SIZE": "2"}, lambda: _fit(X)), ValueError,
         r"WORLD_SIZE=2 is set.*RANK, MASTER_ADDR, MASTER_PORT are not set; launch the script with torchrun"),
    Case("cli-nproc", CLI, "vae train --nproc 0", lambda t: [*TRAIN, "--nproc", "0", "--out", str(t / "run")],
         ValueError, r"--nproc must be an int >= 1; got 0"),
    Case("cli-nproc-batch", CLI, "vae train --nproc 2 --batch-size 33",
         lambda t: [*TRAIN, "--nproc", "2", "--batch-size", "33", "--out", str(t / "run")], ValueError,
         r"--batch-size 33 must divide by --nproc 2: it is the global batch"),
    Case("cli-nproc-tf-device", CLI, "vae train --backend tf --nproc 2 --device cpu",
         lambda t: [*TRAIN, "--backend", "tf", "--nproc", "2", "--device", "cpu", "--out", str(t / "run")],
         ValueError, r"--nproc 2 with --backend tf trains on the strategy's devices; drop --device cpu"),
    # ------------------------------------------------------------ map-style datasets given to fit (issue 28)
    Case("dataset-item-shape", PY, "a dataset whose item 7 is (8, 9)",
         lambda t: lambda: _fit_items(_Items({7: np.zeros((8, 9), np.float32)})), ValueError,
         r"train\[7\] has shape \(8, 9\); expected an example of shape \(64,\) or \(8, 8, 1\) or \(8, 8\) or "
         r"\(1, 8, 8\) to match the spec .*Build the model with a VAESpec"),
    Case("dataset-item-dtype", PY, "a dataset whose item 3 is int64",
         lambda t: lambda: _fit_items(_Items({3: np.zeros(64, np.int64)})), TypeError,
         r"train\[3\] has dtype int64 .*expected float32, float64 or uint8"),
    Case("dataset-item-nan", PY, "a dataset whose item 5 holds a NaN",
         lambda t: lambda: _fit_items(_Items({5: _with(np.nan)[3]})), ValueError,
         r"train\[5\] holds NaN or inf values \(1 of 64\); clean or drop that example"),
    Case("dataset-item-range", PY, "a dataset whose item 2 holds 1.5 (Bernoulli decoder)",
         lambda t: lambda: _fit_items(_Items({2: _with(1.5)[3]})), ValueError,
         r"train\[2\] must lie in \[0, 1\] for a Bernoulli decoder; got values in .*1\.5"),
    Case("dataset-item-raises", PY, "a dataset whose item 9 raises OSError",
         lambda t: lambda: _fit_items(_Items({9: OSError("image 9 is unreadable")})), ValueError,
         r"train\[9\] raised OSError: image 9 is unreadable\. Every index in \[0, 20\) .*must give an example"),
    Case("dataset-mixed-dtypes", PY, "a dataset of uint8 item 0 and float32 items",
         lambda t: lambda: _fit_items(_Items({0: np.zeros(64, np.uint8)})), TypeError,
         r"train\[\d+\] has dtype float32, but train\[0\] is uint8: every item must be uint8 images, or every "
         r"item floats"),
    Case("dataset-empty", PY, "a dataset of length 0", lambda t: lambda: _fit_items(_Items(n=0)), ValueError,
         r"train is empty \(len\(train\) is 0\); pass at least one example"),
    Case("dataset-length-changes", PY, "a dataset that loses an item while fit reads it",
         lambda t: lambda: _fit_items(_Items(shrinks_at=4)), ValueError,
         r"train changed length while fit read it: len\(train\) was 20 when fit started, and is now 19"),
    Case("val-dataset-item-shape", PY, "a validation dataset whose item 4 is (63,)",
         lambda t: lambda: _fit_items(X, _Items({4: X[4, :63]})), ValueError,
         r"val\[4\] has shape \(63,\); expected an example of shape \(64,\) or "),
    Case("dataloader", PY, "a torch DataLoader (an iterable of batches)", lambda t: lambda: _fit_items(_loader()),
         TypeError, r"map-style dataset .*; got DataLoader, an iterable of batches or examples: fit reads examples "
                    r"by index, .* pass the map-style dataset behind it \(train\.dataset\)"),
    Case("generator", PY, "a generator of examples", lambda t: lambda: _fit_items(row for row in X), TypeError,
         r"a \.npy map .*; got generator, an iterable"),
    Case("dict", PY, "a dict {'x': array}", lambda t: lambda: _fit_items({"x": X}), TypeError,
         r"got a dict with keys \['x'\]: pass the array of examples it holds"),
    Case("path-string", PY, "a file name instead of its data", lambda t: lambda: _fit_items("images.npy"),
         TypeError, r"got str 'images\.npy', a path\? Load .* with vae_core\.data\.load_images\(path\)"),
    Case("data-workers", PY, "fit(data_workers=-1)", lambda t: lambda: _fit_items(X, data_workers=-1), ValueError,
         r"fit\.data_workers must be an int >= 0; got -1"),
]


def _with_env(changes: dict[str, str], call: Callable[[], Any]) -> Any:
    """`call()` with the environment variables `changes` set, restored afterwards."""
    import os

    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        return call()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
