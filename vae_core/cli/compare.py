"""`vae compare`: train two or more backends side by side and compare their curves (`compare_backends`).

`python -m scripts.compare_backends` runs it too. The backends are --backends (`backends=`), torch and tf by
default, any two or more of the registry's (`vae_core.registry.BACKENDS`); the first is the reference, which the
differences are taken against (tf - torch by default). Every backend gets the same spec, config, data and seed.
Since `vae_core.init_weights` is shared, the same seed already gives them the same initial weights; `same_init`
makes that explicit by writing one neutral checkpoint (`init.safetensors`) and loading it into each. Data order is
shared too (`epoch_permutation`); the reparameterisation noise is each backend's own stream unless `lockstep`, which
feeds every backend the parity suite's shared eps, so the runs differ only by float32 rounding.

Writes into `out`: one folder per backend, torch/ and tf/ by default (each backend's checkpoints and run.json, as
`vae train` writes into its --out, so that `vae evaluate`, `score`, `sample`, `reconstruct` and `plot` find the data
without --dataset), compare.png (curves and their per-epoch difference from the reference), compare.md and
compare.json (final numbers, per-epoch wall time, and each class's test -ELBO, by the class's name); with
`tensorboard`, the runs as TensorBoard event files (`vae_core.callbacks.TensorBoard`), one run per backend.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
from pathlib import Path
from typing import Any, NoReturn, Sequence

from vae_core.cli.backend_options import check_applies
from vae_core.cli.common import write_json
from vae_core.cli.loggers import tensorboard_callback
from vae_core.cli.options import RUN_FILE, RUN_KEYS, check_dataset_flags, flag_values, read_config_file, run_record
from vae_core.config import TrainConfig
from vae_core.data.datasets import load_dataset
from vae_core.io.atomic import atomic_write
from vae_core.io.out_dir import check_writable_dir, prepare_out_dir
from vae_core.io.run_files import RUN_FILES, check_file_targets, check_new_run, remove_run
from vae_core.io.run_lock import run_lock
from vae_core.model.spec import VAESpec
from vae_core.registry import BACKENDS, build, evaluate, fit, load_checkpoint, save_checkpoint
from vae_core.viz.curves import plot_backend_comparison

DEFAULT_BACKENDS = ("torch", "tf")  # --backends' default: the reference first
ORDER = DEFAULT_BACKENDS  # the name it had when vae compare trained exactly these two
TERMS = ("loss", "recon", "kl")


def check_backends(value: Any, argument: str = "compare_backends.backends") -> tuple[str, ...]:
    """The backends to compare, from `value`: a comma-separated string ("torch,tf", as --backends takes it) or a
    sequence of names. Two or more names of the registry, each once; the first is the reference. Else a ValueError
    of one line that names `argument`, what it takes, what it got and the fix."""
    cli = argument.startswith("--")
    expected = (f"two or more of the registered backends ({', '.join(BACKENDS)}), each once, "
                f"{'comma-separated, ' if cli else ''}the first the reference the others are compared with")

    def example(first: str = DEFAULT_BACKENDS[0]) -> str:
        pair = (first, next(name for name in BACKENDS if name != first))
        return f"{argument} {','.join(pair)}" if cli else f"backends={pair!r}"

    def refuse(problem: str, fix: str) -> NoReturn:
        raise ValueError(f"{argument} must be {expected}; got {value!r}: {problem}; {fix}")

    if isinstance(value, str):
        names = [name.strip() for name in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        names = list(value)
    else:
        refuse("not a comma-separated string or a sequence of names", f"pass e.g. {example()}")
    if "" in names:
        refuse("an empty name", f"drop the extra comma, e.g. {example()}")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        refuse(f"{unknown[0]!r} is not a registered backend", f"pass only registered names, e.g. {example()}")
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if repeated is not None:
        refuse(f"{repeated!r} is named twice", "name each backend once")
    if not names:
        refuse("no backend", f"pass e.g. {example()}")
    if len(names) < 2:
        refuse(f"only {names[0]!r}", f"add a backend to compare it with, e.g. {example(names[0])}")
    return tuple(names)


def check_installed(backends: Sequence[str], argument: str) -> None:
    """An ImportError when the framework of one of `backends` is not installed, before anything trains (checked
    without importing it, so that no framework starts before its turn)."""
    for name in backends:
        _, frameworks, extra = BACKENDS[name]
        if importlib.util.find_spec(frameworks[0]) is None:
            raise ImportError(f"{argument} names backend {name!r}, which needs {frameworks[0]!r}, which is not "
                              f"installed; install it with: pip install 'vae-core[{extra}]', or leave {name} out "
                              f"of {argument}")


def run(args: argparse.Namespace) -> int:
    """`vae compare`: the spec and config from --config and the flags, then `compare_backends` into --out."""
    backends = check_backends(args.backends, "--backends")
    check_installed(backends, "--backends")
    file = read_config_file(args.config) if args.config else {}
    flags = flag_values(args)
    check_dataset_flags(args.dataset, args.image_size, args.image_mode)
    for backend in backends:  # the help's "(backends: ...)" (vae_core.cli.backend_options)
        check_applies("--device", args.device, backend)
    if args.tensorboard is not None:  # checked before --out is made
        check_writable_dir(args.tensorboard, "--tensorboard")
    out = prepare_out_dir(args.out, "--out")
    result = compare_backends(dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                              image_size=args.image_size, image_mode=args.image_mode,
                              spec_changes={**file.get("spec", {}), **flags["spec"]},
                              config_changes={**file.get("train", {}), **flags["train"]},
                              same_init=args.same_init or args.lockstep, lockstep=args.lockstep, out=out,
                              device=args.device or "auto", progress=not args.no_progress,
                              command=args.command_line, tensorboard=args.tensorboard, overwrite=args.overwrite,
                              backends=backends)
    print(result["markdown"])
    return 0


def compare_backends(*, dataset: str = "mnist-5k", data_dir: str | Path | None = None, download: bool = False,
                     image_size: tuple[int, int] | None = None, image_mode: str | None = None,
                     spec_changes: dict[str, Any] | None = None, config_changes: dict[str, Any] | None = None,
                     same_init: bool = False, lockstep: bool = False, out: str | Path = "runs/compare",
                     device: str = "auto", progress: bool = True, command: str | None = None,
                     tensorboard: str | Path | None = None, overwrite: bool = False,
                     backends: Sequence[str] | str = DEFAULT_BACKENDS) -> dict[str, Any]:
    """Train the backends and write the comparison; returns {"histories", "summary", "markdown", "paths"}.

    backends: two or more registered backends, each once, in this order (a sequence of names, or one string of
    comma-separated names); the first is the reference the differences are taken against. Default torch and tf.

    overwrite: replace the comparison `out` holds (`compare_files`: its runs and results), whose files are removed
    once the arguments have passed, before training; without it such a folder is refused before anything is read.

    tensorboard: a folder to log the runs into for TensorBoard, one run per backend and split
    (tensorboard/torch/train, tensorboard/torch/validation, tensorboard/tf/...), so that TensorBoard overlays the
    backends' curves.

    command: the command line that ran this, written at the top of compare.md and into compare.json.
    image_size, image_mode: the files of "torchvision:image-folder" resized and converted (see load_dataset).
    """
    backends = check_backends(backends)
    check_installed(backends, "compare_backends.backends")
    if not overwrite:  # a finished comparison is never replaced by accident
        check_new_run(out, compare_files(), "--out", overwrite="--overwrite")
    check_file_targets(out, compare_files(), "--out")  # nothing but a file where one goes: checked before training
    data = load_dataset(dataset, data_dir=data_dir, download=download,
                        image_size=None if image_size is None else tuple(image_size), mode=image_mode)
    changes = dict(spec_changes or {})
    for name, value in (("input_dim", data.input_dim), ("image_shape", data.image_shape)):
        if name in changes and changes[name] != value:
            raise ValueError(f"{name}={changes[name]} does not match dataset {dataset!r} ({name}={value})")
        changes[name] = value
    spec, config = VAESpec(**changes), TrainConfig(**(config_changes or {}))
    same_init = same_init or lockstep
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:  # the arguments have passed: the old comparison's files go, none left beside the new one's
        remove_run(out, compare_files())
    init_path = out / "init.safetensors"
    if same_init:
        save_checkpoint(init_path, build(backends[0], spec, seed=config.seed), train_config=config)

    histories: dict[str, dict[str, list[float]]] = {}
    models: dict[str, Any] = {}
    loggers = {backend: [] if tensorboard is None else
               [tensorboard_callback(Path(tensorboard) / backend, data.x_test, config.seed, "--tensorboard")]
               for backend in backends}  # made (and so checked) before any backend trains
    argv = shlex.split(command)[1:] if command else []  # run.json's command line, as `vae train` writes it
    for backend in backends:
        model = load_checkpoint(init_path, backend) if same_init else build(backend, spec, seed=config.seed)
        folder = out / backend
        folder.mkdir(exist_ok=True)
        with run_lock(folder, "--out"):  # held from run.json to the last checkpoint, as `vae train` holds it
            write_json(folder / RUN_FILE, run_record(
                _run_options(backend, folder, dataset, data_dir, image_size, image_mode, device, tensorboard),
                spec, config, argv))
            histories[backend] = fit(model, data.x_train, data.x_test, config, out_dir=folder,
                                     shared_noise=lockstep, device=device, progress=progress,
                                     callbacks=loggers[backend])
        models[backend] = model

    summary = summarize(histories)
    summary["per_class"] = per_class(models, data, config.seed, device)
    meta = {"dataset": data.name, "n_train": len(data.x_train), "n_test": len(data.x_test), "spec": spec.to_dict(),
            "train_config": config.to_dict(), "same_init": same_init, "lockstep": lockstep, "device": device,
            "command": command, "class_names": None if data.class_names is None else list(data.class_names)}
    text = markdown(meta, summary, histories)
    paths = {"figure": plot_backend_comparison(histories, out / "compare.png", reference=backends[0]),
             "markdown": atomic_write(out / "compare.md", text.encode()),
             "json": atomic_write(out / "compare.json", json.dumps(
                 {**meta, "summary": summary, "histories": histories}, indent=1).encode())}
    return {"histories": histories, "summary": summary, "markdown": text, "paths": paths}


def _run_options(backend: str, folder: Path, dataset: str, data_dir: str | Path | None,
                 image_size: tuple[int, int] | None, image_mode: str | None, device: str,
                 tensorboard: str | Path | None) -> dict[str, Any]:
    """One backend's run options for its run.json, with the keys of `vae train`'s (RUN_KEYS, None where compare has
    no such option); paths absolute, as `vae train` writes them, so the run's data is found from any folder."""
    return {**dict.fromkeys(RUN_KEYS), "backend": backend, "dataset": dataset,
            "image_size": None if image_size is None else list(image_size), "image_mode": image_mode,
            "data_dir": None if data_dir is None else os.path.abspath(data_dir), "device": device, "precision": "fp32",
            "tensorboard": None if tensorboard is None else os.path.abspath(Path(tensorboard) / backend),
            "out": str(folder)}


def compare_files(backends: Sequence[str] | None = None) -> list[str]:
    """The files of a comparison in its folder: the shared init checkpoint, each backend's run, the results.
    backends: those whose runs to list; None, every registered one (what an earlier comparison may have left: a
    new one is checked, and --overwrite removes, whichever backends that one trained)."""
    names = tuple(BACKENDS) if backends is None else backends
    return ["init.safetensors", *(f"{backend}/{name}" for backend in names for name in RUN_FILES),
            "compare.png", "compare.md", "compare.json"]


def per_class(models: dict[str, Any], data: Any, seed: int, device: str) -> list[dict[str, Any]]:
    """Each test class's -ELBO in each backend (one sample per image, noise fixed by `seed`), the class by its name
    (the label when the dataset has no names): [{"class", "label", "n", "torch", "tf"}, ...] in label order, one
    key per backend of `models`."""
    import numpy as np

    rows = []
    for label in np.unique(data.y_test):
        x = data.x_test[data.y_test == label]
        name = str(label) if data.class_names is None else data.class_names[int(label)]
        row = {"class": name, "label": int(label), "n": len(x)}
        row.update({b: evaluate(m, x, seed=seed, device=device)["loss"] for b, m in models.items()})
        rows.append(row)
    return rows


def summarize(histories: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Final train/test numbers per backend, each other backend's difference from the first (the reference), and
    epoch wall times: {"final": {backend: row}, "<other>_minus_<reference>": {key: difference} for each other
    backend ("tf_minus_torch"), "max_abs_epoch_difference": {key: the largest |other - reference| over the epochs
    both have, and over the other backends}}; with three or more backends also
    "max_abs_epoch_difference_by_backend": {other: {key: value}}."""
    rows: dict[str, dict[str, float]] = {}
    for backend, h in histories.items():
        row = {f"train_{t}": h[f"train_{t}"][-1] for t in TERMS}
        row.update({f"test_{t}": h[f"val_{t}"][-1] for t in TERMS if h.get(f"val_{t}")})
        seconds = h["seconds"]
        steady = sorted(seconds[1:] or seconds)  # median: robust to another job slowing a few epochs
        median = (steady[(len(steady) - 1) // 2] + steady[len(steady) // 2]) / 2
        row.update(first_epoch_s=seconds[0], steady_epoch_s=median, epochs=len(seconds))
        rows[backend] = row
    reference, *others = histories
    ref, ref_row = histories[reference], rows[reference]
    summary: dict[str, Any] = {"final": rows}
    by_backend: dict[str, dict[str, float]] = {}
    for other in others:
        summary[f"{other}_minus_{reference}"] = {k: rows[other][k] - ref_row[k] for k in ref_row
                                                 if k.startswith(("train_", "test_")) and k in rows[other]}
        by_backend[other] = {key: max(abs(a - b) for a, b in zip(ref[key], histories[other][key]))
                             for key in (f"{s}_{t}" for s in ("train", "val") for t in TERMS)
                             if ref.get(key) and histories[other].get(key)}
    keys = [key for key in by_backend[others[0]] if all(key in values for values in by_backend.values())]
    summary["max_abs_epoch_difference"] = {key: max(values[key] for values in by_backend.values()) for key in keys}
    if len(others) > 1:
        summary["max_abs_epoch_difference_by_backend"] = by_backend
    return summary


def markdown(meta: dict[str, Any], summary: dict[str, Any], histories: dict[str, dict[str, list[float]]]) -> str:
    """The comparison as a Markdown table of final numbers and one of per-epoch wall times; the backends in the
    order of `histories`, the first the reference."""
    final = summary["final"]
    reference, *others = histories
    diffs = {other: summary[f"{other}_minus_{reference}"] for other in others}
    nan = float("nan")
    mode = "lockstep (same init and noise)" if meta["lockstep"] else (
        "same init checkpoint" if meta["same_init"] else "same seed")
    spec = meta["spec"]
    convs = f"conv {'-'.join(map(str, spec['conv_channels']))} then " if spec.get("architecture") == "conv" else ""
    lines = [f"# {' vs '.join(histories)} on {meta['dataset']} ({meta['n_train']} train / {meta['n_test']} test)",
             "", *([f"Command: `{meta['command']}`", ""] if meta.get("command") else []),
             f"Spec {convs}{meta['spec']['input_dim']}-{'-'.join(map(str, meta['spec']['hidden_dims']))}-"
             f"{meta['spec']['latent_dim']} {meta['spec']['likelihood']}, {meta['train_config']['epochs']} epochs, "
             f"batch {meta['train_config']['batch_size']}, lr {meta['train_config']['learning_rate']}, "
             f"seed {meta['train_config']['seed']}; {mode}; device {meta['device']}.", "",
             "| backend | train -ELBO | test -ELBO | test recon | test KL | first epoch (s) | later epochs, median (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for backend in histories:
        r = final[backend]
        lines.append(f"| {backend} | {r['train_loss']:.2f} | {r.get('test_loss', nan):.2f} | "
                     f"{r.get('test_recon', nan):.2f} | {r.get('test_kl', nan):.2f} | "
                     f"{r['first_epoch_s']:.1f} | {r['steady_epoch_s']:.1f} |")
    for other, diff in diffs.items():
        lines.append(f"| {other} - {reference} | {diff['train_loss']:+.2f} | {diff.get('test_loss', nan):+.2f} | "
                     f"{diff.get('test_recon', nan):+.2f} | {diff.get('test_kl', nan):+.2f} | | |")
    by_backend = summary.get("max_abs_epoch_difference_by_backend") or {
        others[0]: summary["max_abs_epoch_difference"]}
    lines.append("")
    lines += [f"Largest per-epoch |{other} - {reference}|: " + ", ".join(
        f"{k} {v:.3g}" for k, v in values.items()) + "." for other, values in by_backend.items()]
    epochs = max(len(h["seconds"]) for h in histories.values())  # early stopping may end a run sooner
    lines += ["", "| epoch | " + " | ".join(f"{b} test -ELBO" for b in histories) + " | "
              + " | ".join(f"{b} s" for b in histories) + " |",
              "|---:|" + "---:|" * (2 * len(histories))]
    for i in range(epochs):
        val = [h["val_loss"][i] if len(h.get("val_loss") or ()) > i else nan for h in histories.values()]
        seconds = [h["seconds"][i] if len(h["seconds"]) > i else nan for h in histories.values()]
        lines.append(f"| {i + 1} | " + " | ".join(f"{v:.2f}" for v in val) + " | "
                     + " | ".join(f"{t:.1f}" for t in seconds) + " |")
    if summary.get("per_class"):
        lines += ["", "Test -ELBO per class (one sample per image):", "",
                  "| class | images | " + " | ".join(histories) + " | "
                  + " | ".join(f"{other} - {reference}" for other in others) + " |",
                  "|---|---:|" + "---:|" * (len(histories) + len(others))]
        lines += [f"| {r['class'].replace('|', '/')} | {r['n']} | " + " | ".join(f"{r[b]:.2f}" for b in histories)
                  + " | " + " | ".join(f"{r[other] - r[reference]:+.2f}" for other in others) + " |"
                  for r in summary["per_class"]]
    return "\n".join(lines) + "\n"
