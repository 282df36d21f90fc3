"""`vae train`: train a VAE into --out (checkpoints, run.json, history, plots), in one process or data-parallel."""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, ContextManager

from vae_core.cli.backend_options import IN_PROCESS, PROCESSES, DataParallel, data_parallel
from vae_core.cli.common import check_image_size_memory, check_images_fit, load_data, positive, save_plots, \
    write_json
from vae_core.cli.launch import launch_torchrun
from vae_core.cli.loggers import train_callbacks
from vae_core.cli.options import RUN_FILE, resolve_train, run_record
from vae_core.io.atomic import atomic_write
from vae_core.io.out_dir import prepare_out_dir
from vae_core.io.run_files import PLOTS_DIR, RUN_FILES, check_file_targets, check_new_run, remove_run
from vae_core.io.run_lock import LOCK_FILE, run_lock
from vae_core.model.spec import VAESpec
from vae_core.registry import backend_module, build, fit
from vae_core.system.memory import check_training_memory
from vae_core.system.threads import check_threads
from vae_core.train.history import HISTORY_KEYS
from vae_core.train.resume import idle_resume
from vae_core.train.world import launched_rank, launched_world_size
from vae_core.viz.gallery import GALLERY_FILES


def run(args: argparse.Namespace) -> int:
    positive("--nproc", args.nproc)
    plan = resolve_train(args)
    opts, config = plan["opts"], plan["config"]
    if config.batch_size % args.nproc:
        raise ValueError(f"--batch-size {config.batch_size} must divide by --nproc {args.nproc}: it is the global "
                         f"batch, split evenly between them; use a multiple of {args.nproc}")
    rank, launched = launched_rank(), launched_world_size() > 1  # under torchrun: rank 0 writes and prints
    writer = rank == 0
    if plan["resume_from"] is not None:  # nothing to train: one line, exit 0, before any data is read or file written
        idle = idle_resume(plan["resume_from"], config, flags=True)
        if idle is not None:
            if writer:
                print(f"vae train: {opts['out']!r} {idle}; nothing written", file=sys.stderr)
            return 0
    # The CLI, not the trainer, holds the run lock: it writes run.json before fit starts, and with --nproc the
    # ranks are other processes, which find it held through HELD_ENV (the trainer's run_lock is then a no-op).
    with contextlib.ExitStack() as held:
        out = _check_out_early(Path(opts["out"]), held if writer else None, args)
        if plan["spec"] is None and not launched and not args.no_memory_check:  # --image-size: before files resize
            check_image_size_memory(opts, plan["spec_changes"], processes=args.nproc)
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
        if not launched and not args.no_memory_check:  # before a byte is allocated for the model or written
            batch = min(config.batch_size, len(data.x_train))  # a step never holds more examples than there are
            _, notes = check_training_memory(spec, batch_size=batch, precision=opts["precision"],
                                             processes=args.nproc, backend=opts["backend"], fix_flags=True)
            for note in notes:
                print(f"vae train: note: {note}", file=sys.stderr)
        module = backend_module(opts["backend"])  # the backend's package; its framework may not have started yet
        if args.threads is not None:  # checked now, and set before the framework starts: TensorFlow and JAX fix
            check_threads(args.threads, "--threads")  # their pools then (the data-parallel setup may start them)
            module.device.set_threads(args.threads, "--threads")
        parallel = data_parallel(opts["backend"]) if args.nproc > 1 else None
        devices = None  # --nproc N in this process: what the model is built under (tf's strategy, jax's mesh)
        if parallel is not None and parallel.how == IN_PROCESS:  # before the framework starts: it may split the CPU
            if opts["device"] != "auto":
                raise ValueError(f"--nproc {args.nproc} with --backend {opts['backend']} trains on the "
                                 f"{parallel.holds}'s devices; drop --device {opts['device']}")
            devices = getattr(module.distributed, parallel.setup)(args.nproc)
        module.device.resolve_device(opts["device"], "--device")  # imports the framework
        # --tensorboard and --mlflow: checked (installed, writable) by making them, before anything is written
        callbacks = train_callbacks(opts, data, config, Path(opts["out"])) if writer else []
        if out is None:  # every argument is checked before anything is written
            out = prepare_out_dir(Path(opts["out"]), "--out")
        lock = held.enter_context(run_lock(out, "--out")) if writer else None  # one run per folder
        if writer:  # again, under the lock: nothing came into the folder since the early check
            _check_run_folder(out, args)
        if parallel is not None and parallel.how == PROCESSES and not launched:
            del data  # checked; each rank loads its own
            return launch_torchrun(args.nproc, args.argv, lock)
        if not writer:  # another rank of a torchrun job: it trains, rank 0 writes
            model = build(opts["backend"], spec, seed=config.seed, check_memory=False)
            fit(model, data.x_train, data.x_test, config, out_dir=out, resume_from=plan["resume_from"],
                overwrite=args.overwrite, device=opts["device"], precision=opts["precision"], progress=False)
            return 0
        for stale in out.glob(".*.safetensors.*.tmp"):  # temp files of a write that was killed mid-way
            stale.unlink()
        if args.overwrite:  # every argument has passed: the old run's files go, none left beside the new run's
            remove_run(out, _run_paths())
        write_json(out / RUN_FILE, run_record(opts, spec, config, sys.argv[1:]))
        with _on_devices(parallel, devices, fit=True):  # jax: its mesh holds while the model is built and trained
            with _on_devices(parallel, devices, fit=False):  # tf: the strategy's scope holds while it is built
                model = build(opts["backend"], spec, seed=config.seed, check_memory=False)
            start_msg = f"resuming {plan['resume_from']}" if plan["resume_from"] else "training"
            size = launched_world_size() if launched else args.nproc
            world = f" x {size}" if size > 1 else ""
            print(f"vae train: {start_msg}: {opts['backend']}{world} on {data.name} ({len(data.x_train)} train / "
                  f"{len(data.x_test)} test), {spec.num_params:,} parameters, {config.epochs} epochs, threads "
                  f"{args.threads or 'auto'} -> {out}/",
                  file=sys.stderr)
            kwargs: dict[str, Any] = {"out_dir": out, "resume_from": plan["resume_from"], "overwrite": args.overwrite,
                                      "device": opts["device"], "precision": opts["precision"],
                                      "progress": not args.no_progress,
                                      "callbacks": callbacks, "threads": args.threads}
            history = fit(model, data.x_train, data.x_test, config, **kwargs)
        write_json(out / "history.json", history)
        atomic_write(out / "history.csv", _history_csv(history))
        if not args.no_plots:
            save_plots(model, data, out / "plots", history, seed=config.seed)
        last = {k: history[k][-1] for k in ("train_loss", "val_loss", "val_recon", "val_kl") if history.get(k)}
        print(json.dumps({"out": str(out), "epochs": len(history["train_loss"]), **last}))
    return 0


def _on_devices(parallel: DataParallel | None, devices: Any, *, fit: bool) -> ContextManager[Any]:
    """The context of --nproc's devices in this process (tf's strategy scope, jax's mesh) around the model's build
    (fit=False) or around its build and training (fit=True), as the backend's `DataParallel.during_fit` says;
    nothing without such devices, or at the other stage."""
    if devices is None or parallel is None or parallel.during_fit != fit:
        return contextlib.nullcontext()
    return parallel.enter(devices)


def _check_out_early(out: Path, held: contextlib.ExitStack | None, args: argparse.Namespace) -> Path | None:
    """--out checked before the data is read, where that writes nothing: when the folder exists (or a file stands
    in its way) it is prepared now, and if a run left its lock file there (a busy folder has one) the lock is taken
    into `held` (None: not the writing rank); then the writing rank checks the run folder (`_check_run_folder`).
    Returns the prepared folder, or None when --out does not exist yet: it is created only once the data and every
    other argument have passed."""
    nearest = next((p for p in (out, *out.parents) if p.exists()), None)
    if nearest is None or (nearest != out and nearest.is_dir()):
        return None
    out = prepare_out_dir(out, "--out")  # raises for a file in the way; else probes the existing folder
    if held is not None and (out / LOCK_FILE).is_file():
        held.enter_context(run_lock(out, "--out"))
    if held is not None:  # another rank of a torchrun job may find the files rank 0 is writing
        _check_run_folder(out, args)
    return out


def _run_paths() -> list[str]:
    """The files of a `vae train` run in its folder: what --overwrite removes."""
    return [*RUN_FILES, *(f"{PLOTS_DIR}/{name}" for name in GALLERY_FILES)]


def _check_run_folder(out: Path, args: argparse.Namespace) -> None:
    """A folder that holds a run takes only --resume (continue it) or --overwrite (replace it); and every file the
    run writes there can be written (nothing but a regular file where one goes), before any of them is replaced."""
    if not args.resume and not args.overwrite:
        check_new_run(out, RUN_FILES, "--out", resume="--resume", overwrite="--overwrite")
    plots = () if args.no_plots else (PLOTS_DIR,)
    check_file_targets(out, _run_paths() if plots else RUN_FILES, "--out", folders=plots)


def _history_csv(history: dict[str, list[float]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *HISTORY_KEYS])
    for i in range(len(history.get("train_loss", []))):
        writer.writerow([i + 1, *(history[k][i] if i < len(history.get(k, [])) else "" for k in HISTORY_KEYS)])
    return buf.getvalue().encode()
