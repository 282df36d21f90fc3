"""`vae compare`: train the torch and tf backends side by side and compare their curves (`compare_backends`).

`python -m scripts.compare_backends` runs it too. Both backends get the same spec, config, data and seed. Since
`vae_core.init_weights` is shared, the same seed already gives both the same initial weights; `same_init` makes that
explicit by writing one neutral checkpoint (`init.safetensors`) and loading it into both. Data order is shared too
(`epoch_permutation`); the reparameterisation noise is each backend's own stream unless `lockstep`, which feeds both
the parity suite's shared eps, so the two runs differ only by float32 rounding.

Writes into `out`: torch/ and tf/ (each backend's checkpoints and run.json, as `vae train` writes into its --out, so
that `vae evaluate`, `score`, `sample`, `reconstruct` and `plot` find the data without --dataset), compare.png
(curves and their per-epoch difference), compare.md and compare.json (final numbers, per-epoch wall time, and each
class's test -ELBO, by the class's name); with `tensorboard`, both runs as TensorBoard event files
(`vae_core.callbacks.TensorBoard`), one run per backend.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any

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
from vae_core.registry import build, evaluate, fit, load_checkpoint, save_checkpoint
from vae_core.viz.curves import plot_backend_comparison

ORDER = ("torch", "tf")
TERMS = ("loss", "recon", "kl")


def run(args: argparse.Namespace) -> int:
    """`vae compare`: the spec and config from --config and the flags, then `compare_backends` into --out."""
    file = read_config_file(args.config) if args.config else {}
    flags = flag_values(args)
    check_dataset_flags(args.dataset, args.image_size, args.image_mode)
    for backend in ORDER:  # the help's "(backends: ...)" (vae_core.cli.backend_options)
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
                              command=args.command_line, tensorboard=args.tensorboard, overwrite=args.overwrite)
    print(result["markdown"])
    return 0


def compare_backends(*, dataset: str = "mnist-5k", data_dir: str | Path | None = None, download: bool = False,
                     image_size: tuple[int, int] | None = None, image_mode: str | None = None,
                     spec_changes: dict[str, Any] | None = None, config_changes: dict[str, Any] | None = None,
                     same_init: bool = False, lockstep: bool = False, out: str | Path = "runs/compare",
                     device: str = "auto", progress: bool = True, command: str | None = None,
                     tensorboard: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train both backends and write the comparison; returns {"histories", "summary", "markdown", "paths"}.

    overwrite: replace the comparison `out` holds (`compare_files`: its runs and results), whose files are removed
    once the arguments have passed, before training; without it such a folder is refused before anything is read.

    tensorboard: a folder to log both runs into for TensorBoard, as two runs of each split (tensorboard/torch/train,
    tensorboard/torch/validation, tensorboard/tf/...), so that TensorBoard overlays the backends' curves.

    command: the command line that ran this, written at the top of compare.md and into compare.json.
    image_size, image_mode: the files of "torchvision:image-folder" resized and converted (see load_dataset).
    """

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
        save_checkpoint(init_path, build("torch", spec, seed=config.seed), train_config=config)

    histories: dict[str, dict[str, list[float]]] = {}
    models: dict[str, Any] = {}
    loggers = {backend: [] if tensorboard is None else
               [tensorboard_callback(Path(tensorboard) / backend, data.x_test, config.seed, "--tensorboard")]
               for backend in ORDER}  # made (and so checked) before either backend trains
    argv = shlex.split(command)[1:] if command else []  # run.json's command line, as `vae train` writes it
    for backend in ORDER:
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
    paths = {"figure": plot_backend_comparison(histories, out / "compare.png"),
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


def compare_files() -> list[str]:
    """The files of a comparison in its folder: the shared init checkpoint, each backend's run, the results."""
    return ["init.safetensors", *(f"{backend}/{name}" for backend in ORDER for name in RUN_FILES),
            "compare.png", "compare.md", "compare.json"]


def per_class(models: dict[str, Any], data: Any, seed: int, device: str) -> list[dict[str, Any]]:
    """Each test class's -ELBO in each backend (one sample per image, noise fixed by `seed`), the class by its name
    (the label when the dataset has no names): [{"class", "label", "n", "torch", "tf"}, ...] in label order."""
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
    """Final train/test numbers per backend, their difference (tf - torch), and epoch wall times."""
    rows: dict[str, dict[str, float]] = {}
    for backend, h in histories.items():
        row = {f"train_{t}": h[f"train_{t}"][-1] for t in TERMS}
        row.update({f"test_{t}": h[f"val_{t}"][-1] for t in TERMS if h.get(f"val_{t}")})
        seconds = h["seconds"]
        steady = sorted(seconds[1:] or seconds)  # median: robust to another job slowing a few epochs
        median = (steady[(len(steady) - 1) // 2] + steady[len(steady) // 2]) / 2
        row.update(first_epoch_s=seconds[0], steady_epoch_s=median, epochs=len(seconds))
        rows[backend] = row
    diff = {k: rows["tf"][k] - rows["torch"][k] for k in rows["torch"] if k.startswith(("train_", "test_"))}
    per_epoch = {key: max(abs(a - b) for a, b in zip(histories["torch"][key], histories["tf"][key]))
                 for key in (f"{s}_{t}" for s in ("train", "val") for t in TERMS) if histories["torch"].get(key)}
    return {"final": rows, "tf_minus_torch": diff, "max_abs_epoch_difference": per_epoch}


def markdown(meta: dict[str, Any], summary: dict[str, Any], histories: dict[str, dict[str, list[float]]]) -> str:
    """The comparison as a Markdown table of final numbers and one of per-epoch wall times."""
    final, diff = summary["final"], summary["tf_minus_torch"]
    mode = "lockstep (same init and noise)" if meta["lockstep"] else (
        "same init checkpoint" if meta["same_init"] else "same seed")
    spec = meta["spec"]
    convs = f"conv {'-'.join(map(str, spec['conv_channels']))} then " if spec.get("architecture") == "conv" else ""
    lines = [f"# torch vs tf on {meta['dataset']} ({meta['n_train']} train / {meta['n_test']} test)", "",
             *([f"Command: `{meta['command']}`", ""] if meta.get("command") else []),
             f"Spec {convs}{meta['spec']['input_dim']}-{'-'.join(map(str, meta['spec']['hidden_dims']))}-"
             f"{meta['spec']['latent_dim']} {meta['spec']['likelihood']}, {meta['train_config']['epochs']} epochs, "
             f"batch {meta['train_config']['batch_size']}, lr {meta['train_config']['learning_rate']}, "
             f"seed {meta['train_config']['seed']}; {mode}; device {meta['device']}.", "",
             "| backend | train -ELBO | test -ELBO | test recon | test KL | first epoch (s) | later epochs, median (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for backend in ORDER:
        r = final[backend]
        lines.append(f"| {backend} | {r['train_loss']:.2f} | {r.get('test_loss', float('nan')):.2f} | "
                     f"{r.get('test_recon', float('nan')):.2f} | {r.get('test_kl', float('nan')):.2f} | "
                     f"{r['first_epoch_s']:.1f} | {r['steady_epoch_s']:.1f} |")
    lines.append(f"| tf - torch | {diff['train_loss']:+.2f} | {diff.get('test_loss', float('nan')):+.2f} | "
                 f"{diff.get('test_recon', float('nan')):+.2f} | {diff.get('test_kl', float('nan')):+.2f} | | |")
    lines += ["", "Largest per-epoch |tf - torch|: " + ", ".join(
        f"{k} {v:.3g}" for k, v in summary["max_abs_epoch_difference"].items()) + ".", "",
        "| epoch | torch test -ELBO | tf test -ELBO | torch s | tf s |", "|---:|---:|---:|---:|---:|"]
    for i in range(len(histories["torch"]["seconds"])):
        t, f = histories["torch"], histories["tf"]
        val = [h["val_loss"][i] if h.get("val_loss") else float("nan") for h in (t, f)]
        lines.append(f"| {i + 1} | {val[0]:.2f} | {val[1]:.2f} | {t['seconds'][i]:.1f} | {f['seconds'][i]:.1f} |")
    if summary.get("per_class"):
        lines += ["", "Test -ELBO per class (one sample per image):", "",
                  "| class | images | torch | tf | tf - torch |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['class'].replace('|', '/')} | {r['n']} | {r['torch']:.2f} | {r['tf']:.2f} | "
                  f"{r['tf'] - r['torch']:+.2f} |" for r in summary["per_class"]]
    return "\n".join(lines) + "\n"
