"""A plain user script that calls `vae_core.fit`, run by tests/reliability/test_data_parallel.py in three ways: in one process,
under torchrun with 2 processes (torch), under a MirroredStrategy of 2 logical CPU devices (TF), and under a
jax.sharding mesh of the CPU split into 2 XLA devices (JAX).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/reliability/data_parallel_script.py torch OUT
    python tests/reliability/data_parallel_script.py tf OUT --replicas 2
    python tests/reliability/data_parallel_script.py jax OUT --replicas 2

It trains `RUNS` into OUT/<run>/ and writes OUT/result-rank<R>.json per process: each run's history, the rows the
rank's model saw in training, and how many checkpoints the rank wrote; and OUT/<run>/weights-rank<R>.safetensors.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

EXAMPLES = 289  # 9 batches of 32 and a last batch of 1 row: one rank's share of it is empty
SPEC = dict(input_dim=64, hidden_dims=(32,), latent_dim=2)
CONFIG = dict(epochs=2, batch_size=32, grad_clip_norm=1.0, seed=0)  # the clip binds (the test checks)
# (rows seen: 145 and 144 an epoch, rank 0 taking the last batch's one row)
RUNS = {  # name: (precision, config changes, resume from the test's checkpoint)
    "fp32": ("fp32", {"checkpoint_every_steps": 4}, False),
    "fp64": ("fp64", {}, False),  # torch: the float64 bound (TF's is float32 only)
    "resumed": ("fp32", {}, True),  # torch (TF resumes the other way: the test continues the 2-way checkpoint)
}


def data() -> tuple[np.ndarray, np.ndarray]:
    from vae_core.data import load_dataset

    digits = load_dataset("digits")
    return digits.x_train[:EXAMPLES], digits.x_test[:51]  # 51 validation rows: an uneven split too


def train(backend: str, out: Path, resume_from: Path | None, strategy=None, epochs: int | None = None,
          extra_epochs: int = 0, mesh=None) -> dict:
    """Every run of RUNS (with `epochs`: the fp32 run alone, that long; `extra_epochs`: the fp32 run that much
    longer, to compare a continuation with); returns this process's record."""
    import vae_core
    import vae_core.train.loop as trainer
    from vae_core import TrainConfig, VAESpec

    rank = int(os.environ.get("RANK", "0"))
    writes = {"n": 0}
    write = trainer.write_checkpoint

    def counted(*args, **kwargs):  # which processes write checkpoints
        writes["n"] += 1
        return write(*args, **kwargs)

    trainer.write_checkpoint = counted
    x, val = data()
    world = strategy.num_replicas_in_sync if strategy is not None else mesh.size if mesh is not None else \
        int(os.environ.get("WORLD_SIZE", "1"))
    record = {"rank": rank, "world": world, "histories": {}, "rows_seen": {}}
    for name, (precision, changes, resume) in RUNS.items():
        if (resume and resume_from is None) or (epochs is not None and name != "fp32") or \
                (name in ("fp64", "resumed") and backend == "tf"):
            continue
        if epochs is not None or (name == "fp32" and extra_epochs):
            changes = {**changes, "epochs": epochs or CONFIG["epochs"] + extra_epochs}
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = vae_core.build(backend, VAESpec(**SPEC), seed=0)
        rows = _count_rows(model, backend)
        folder = None if precision == "fp64" else out / name
        with _mesh(mesh):  # JAX: fit splits each batch over the mesh's devices
            history = vae_core.fit(model, x, val, TrainConfig(**{**CONFIG, **changes}), out_dir=folder,
                                   resume_from=resume_from if resume else None, precision=precision,
                                   progress=False, device="cpu" if strategy is None and mesh is None else "auto")
        record["histories"][name] = history
        record["rows_seen"][name] = rows()
        if folder is not None:
            from safetensors.numpy import save_file

            from vae_core.registry import backend_module

            save_file(backend_module(backend).weights.export_weights(model),
                      str(folder / f"weights-rank{rank}.safetensors"))
    record["checkpoint_writes"] = writes["n"]
    trainer.write_checkpoint = write
    return record


def _mesh(mesh):
    """`jax.set_mesh(mesh)`, or nothing without a mesh."""
    if mesh is None:
        return contextlib.nullcontext()
    import jax

    return jax.set_mesh(mesh)


def _count_rows(model, backend: str):
    """A counter of the training rows the model's forward pass sees in this process (torch), or None."""
    if backend != "torch":
        return lambda: None
    seen = {"n": 0}

    def hook(module, args):
        if module.training:
            seen["n"] += int(args[0].shape[0])

    model.register_forward_pre_hook(hook)
    return lambda: seen["n"]


def main() -> None:
    from vae_core.registry import BACKENDS

    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=sorted(BACKENDS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--replicas", type=int, default=1, help="TF: a MirroredStrategy of N logical CPU devices; "
                                                               "JAX: a mesh of the CPU split into N devices")
    parser.add_argument("--resume-from", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="the fp32 run alone, this many epochs")
    parser.add_argument("--pid-files", action="store_true", help="write OUT/pid-rank<R> first")
    args = parser.parse_args()
    if args.pid_files:
        (args.out / f"pid-rank{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    strategy = mesh = None
    if args.backend == "tf" and args.replicas > 1:
        from backends.tf.distributed import mirrored_strategy

        strategy = mirrored_strategy(args.replicas)
    if args.backend == "jax" and args.replicas > 1:
        from backends.jax.distributed import local_mesh

        mesh = local_mesh(args.replicas)  # before JAX starts: it splits the CPU
    record = train(args.backend, args.out, args.resume_from, strategy, args.epochs, mesh=mesh)
    (args.out / f"result-rank{record['rank']}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
