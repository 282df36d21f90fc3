"""Data-parallel training equals one process: torchrun with 2 gloo ranks (torch), a MirroredStrategy of 2 logical
CPU devices (TF), and a jax.sharding mesh of 2 XLA CPU devices (JAX), against the same user script in one process
(tests/reliability/data_parallel_script.py).

One launch per backend (a module fixture) runs the script's three fits: float32 with gradient clipping, step
checkpoints and validation; float64; and a resume of a one-process step checkpoint. The tests compare them with
the script's own fits run here, in one process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.reliability import data_parallel_script as script
from tests.conftest import BACKEND_NAMES, missing_framework
from tests.stop_signals import StopAfterChecks

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # seconds for one launch; a hang fails the test instead of stalling CI
HISTORY = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl")


def _subprocess_env() -> dict[str, str]:
    """The environment of a launched job: this checkout on the path, no GPU, one thread per process, and no
    WORLD_SIZE inherited from a launcher around pytest."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return env


# How each framework runs the script 2-way: torchrun with 2 processes (torch), a 2-replica MirroredStrategy in one
# process (TF). A backend with no entry here has its data-parallel test skipped until its launch is written.
LAUNCH = {
    "torch": lambda script_path, out, *args: [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                              "--nproc-per-node", "2", script_path, "torch", out, *args],
    "tf": lambda script_path, out, *args: [sys.executable, script_path, "tf", out, "--replicas", "2", *args],
    "jax": lambda script_path, out, *args: [sys.executable, script_path, "jax", out, "--replicas", "2", *args],
}


def launch(backend: str, out: Path, *args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """The script 2-way, as `LAUNCH` says for the backend."""
    env = _subprocess_env()
    command = LAUNCH[backend](str(ROOT / "tests" / "reliability" / "data_parallel_script.py"), str(out), *args)
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def step_checkpoint(backend: str, folder: Path) -> Path:
    """A one-process step checkpoint in the middle of epoch 2 of the script's fp32 run (a stop after 16 checks:
    torch and JAX check before each step here (JAX: its runs of steps up to a step checkpoint are shorter than a
    block, so they run a step per call), TF before and after each run of steps up to a step checkpoint)."""
    import vae_core
    from vae_core import TrainConfig, VAESpec
    from vae_core.train.interrupt import TrainingInterrupted

    x, val = script.data()
    model = vae_core.build(backend, VAESpec(**script.SPEC), seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vae_core.train.loop, "StopSignals", lambda: StopAfterChecks(16))
        with pytest.raises(TrainingInterrupted) as stop:
            vae_core.fit(model, x, val, TrainConfig(**{**script.CONFIG, "checkpoint_every_steps": 4}),
                         out_dir=folder, progress=False, device="cpu")
    assert stop.value.epoch == 2 and 0 < stop.value.step < 10, stop.value  # the resume starts inside an epoch
    return folder / "last.safetensors"


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_data_parallel_fit_equals_one_process(backend, tmp_path):
    """One 2-way launch of the script against the same script in this process (one launch per backend: it is the
    expensive part, so every check of the launch is here).

    1. Losses: float32 with clipping and step checkpoints within 1e-5, and (torch) float64 within 1e-9 and a
       resume of a one-process step checkpoint by the 2 ranks within 1e-5: per epoch and history key, on every
       rank; and not bit for bit (another computation ran).
    2. Every rank returns the same history, bit for bit; rank 0 alone writes checkpoints; the ranks' weights
       are equal; each torch rank's model saw its half of the rows (TF: the strategy's 2 replicas are in one
       process, and Keras splits the batches).
    3. The 2-way run's checkpoint resumes in one process: its next epoch equals the one-process run's within
       1e-5; and its weights load in every other installed backend and evaluate the same.
    """
    if backend not in LAUNCH:
        pytest.skip(f"no 2-way launch of backend {backend!r} is written in {Path(__file__).name}")
    import vae_core
    from vae_core import TrainConfig, VAESpec, load_checkpoint

    resume_from = step_checkpoint(backend, tmp_path / "stopped") if backend != "tf" else None
    (tmp_path / "parallel").mkdir()
    result = launch(backend, tmp_path / "parallel", *(["--resume-from", str(resume_from)] if resume_from else []))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = {int(p.stem.removeprefix("result-rank")): json.loads(p.read_text())
               for p in (tmp_path / "parallel").glob("result-rank*.json")}
    (tmp_path / "single").mkdir()
    single = script.train(backend, tmp_path / "single", resume_from, extra_epochs=1)  # fp32: one epoch more
    epochs = script.CONFIG["epochs"]

    # 1. the losses of one process
    assert sorted(records) == ([0, 1] if backend == "torch" else [0])
    for record in records.values():
        assert record["world"] == 2
        for name, rtol in (("fp32", 1e-5), ("fp64", 1e-9), ("resumed", 1e-5)):
            if name != "fp32" and backend == "tf":  # the issue bounds TF in float32; TF resumes in step 3
                assert name not in record["histories"]
                continue
            for key in HISTORY:
                assert len(record["histories"][name][key]) == epochs, (name, key)
                gap = _relative(record["histories"][name][key], single["histories"][name][key][:epochs])
                assert gap < rtol, f"{name} {key}: relative gap {gap:.2e} (bound {rtol:g})"
        # ... and not bit for bit: another computation ran (shards and an all-reduce, or the strategy's step;
        # a fit that silently trained alone would repeat the one-process run exactly)
        assert record["histories"]["fp32"]["train_loss"] != single["histories"]["fp32"]["train_loss"][:epochs]

    # 2. one history, rank 0 writes, the work is split
    histories = [r["histories"] for r in records.values()]
    assert all(h == histories[0] for h in histories)  # epoch times included: the slowest rank's
    for rank, record in records.items():
        assert (record["checkpoint_writes"] > 0) == (rank == 0), (rank, record["checkpoint_writes"])
    weights = [_weights(p) for p in sorted((tmp_path / "parallel" / "fp32").glob("weights-rank*.safetensors"))]
    assert len(weights) == len(records)
    assert all(np.array_equal(weights[0][k], other[k]) for other in weights[1:] for k in weights[0])
    if backend == "torch":  # each rank's shard of every global batch, exactly
        from vae_core.train.world import shard

        batch = script.CONFIG["batch_size"]
        sizes = [min(batch, script.EXAMPLES - s) for s in range(0, script.EXAMPLES, batch)]
        expected = [epochs * sum(np.subtract(*shard(b, 2, rank)[::-1]) for b in sizes) for rank in (0, 1)]
        assert [records[rank]["rows_seen"]["fp32"] for rank in (0, 1)] == expected
    else:
        assert records[0]["rows_seen"]["fp32"] is None

    # 3. the checkpoint of the 2-way run: a one-process continuation, and the other backend
    ckpt = tmp_path / "parallel" / "fp32" / "last.safetensors"
    x, val = script.data()
    continued = vae_core.fit(vae_core.build(backend, VAESpec(**script.SPEC), seed=0), x, val,
                             TrainConfig(**{**script.CONFIG, "epochs": epochs + 1}), resume_from=ckpt,
                             progress=False, device="cpu")
    for key in HISTORY:
        gap = _relative(continued[key][-1], single["histories"]["fp32"][key][-1])
        assert gap < 1e-5, f"epoch {epochs + 1} {key} after the resume: relative gap {gap:.2e}"
    others = [name for name in BACKEND_NAMES if name != backend and not missing_framework(name)]
    if not others:
        pytest.skip("no other backend is installed to load the 2-way run's checkpoint")
    here = vae_core.evaluate(load_checkpoint(ckpt, backend), x, device="cpu")["loss"]
    for name in others:
        there = vae_core.evaluate(load_checkpoint(ckpt, name), x, device="cpu")["loss"]
        assert abs(here - there) < 1e-5 * abs(here), name


def test_the_clip_binds_so_the_comparison_covers_it():
    """The first step's gradient norm is well above the clip, so the float32 comparison above exercises
    global-norm clipping of the summed gradient (each replica clipping its own would not match). The data, spec
    and initial weights are the same in both backends, so one backend's gradient says it."""
    torch = pytest.importorskip("torch")
    import vae_core
    from backends.torch.losses import negative_elbo
    from vae_core import VAESpec

    x, _ = script.data()
    model = vae_core.build("torch", VAESpec(**script.SPEC), seed=0)
    xb = torch.from_numpy(x[:script.CONFIG["batch_size"]])
    out, mu, log_var = model(xb, torch.zeros(len(xb), script.SPEC["latent_dim"]))
    negative_elbo(xb, out, mu, log_var).total.backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    assert norm > 3 * script.CONFIG["grad_clip_norm"], norm


CLI = ["train", "--dataset", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "64",
       "--grad-clip-norm", "1", "--no-plots", "--no-progress"]


def _rank_pid(rank: int, out: Path) -> int | None:
    """The pid of rank `rank` of the `vae train` job writing into `out`, from /proc (None until it has started)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(out) in (entry / "cmdline").read_text() and \
                    f"RANK={rank}\0" in (entry / "environ").read_text():
                return int(entry.name)
        except OSError:  # gone, or not ours
            continue
    return None


def test_vae_train_nproc_2_survives_the_sigkill_of_one_rank(tmp_path):
    """`vae train --nproc 2` (torch.distributed.run): a SIGKILL of rank 1 ends the job with status 1; the last
    checkpoint loads, the folder's lock is free, and `--resume` in one process ends on the uninterrupted run's
    losses (within 1e-5)."""
    pytest.importorskip("torch")
    from vae_core import read_checkpoint
    from vae_core.cli import main

    epochs, out = 8, tmp_path / "killed"
    args = [*CLI, "--backend", "torch", "--epochs", str(epochs), "--checkpoint-every-steps", "4", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "vae_core.cli", *args, "--nproc", "2"], cwd=ROOT, env=_subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt, deadline, victim = out / "last.safetensors", time.monotonic() + TIMEOUT, None
    while victim is None or not ckpt.is_file():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "timed out waiting for rank 1 and the first checkpoint"
        victim = victim or _rank_pid(1, out)
        time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    output, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, output[-3000:]
    assert read_checkpoint(ckpt).epoch < epochs, "the job went on after a rank died"  # and it loads
    assert main([*args, "--device", "cpu", "--resume"]) == 0  # the lock was released
    assert main([*args[:-1], str(tmp_path / "whole"), "--device", "cpu"]) == 0
    resumed, whole = (json.loads((folder / "history.json").read_text()) for folder in (out, tmp_path / "whole"))
    for key in HISTORY:
        assert _relative(resumed[key], whole[key]) < 1e-5, key


def test_vae_train_nproc_in_tf_builds_the_model_under_a_mirrored_strategy(tmp_path, monkeypatch):
    """`vae train --backend tf --nproc 2` asks `mirrored_strategy(2)` for the strategy and builds and trains the
    model under it. In this process TensorFlow has started, so its CPU can no longer be split: the stand-in is a
    MirroredStrategy over the one CPU (the 2-device strategy's losses are test_data_parallel_fit_equals_one_process's
    concern). The images come from a .npy, so the replicas' batches are read from the memory map."""
    tf = pytest.importorskip("tensorflow")
    import backends.tf.distributed as tf_distributed
    import vae_core.cli.train
    import vae_core.registry
    from vae_core.cli import main
    from vae_core.data import load_dataset
    from vae_core.data.mapped import MappedRows

    asked, built = [], []
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    monkeypatch.setattr(tf_distributed, "mirrored_strategy", lambda n: asked.append(n) or strategy)
    build = vae_core.registry.build
    for module in (vae_core.registry, vae_core.cli.train):  # where `vae train` looks it up
        monkeypatch.setattr(module, "build", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    digits = load_dataset("digits")  # float32 in [0, 1]
    np.save(tmp_path / "digits.npy", np.concatenate([digits.x_train, digits.x_test]).reshape(-1, 8, 8))
    reads, take = [], MappedRows.take
    monkeypatch.setattr(MappedRows, "take", lambda self, rows: reads.append(len(rows)) or take(self, rows))
    argv = [a for a in CLI if a not in ("--dataset", "digits")]
    assert main([*argv, "--data", str(tmp_path / "digits.npy"), "--backend", "tf", "--epochs", "1", "--nproc", "2",
                 "--out", str(tmp_path / "run")]) == 0
    assert asked == [2] and tf_distributed.strategy_of(built[-1]) is strategy
    # after the checks' chunked scans of the float file, the global batches of 64 are read from it: the 90%
    # training split, and a few batches more (Keras' fit under a strategy reads ahead and builds on one batch)
    assert 1617 <= sum(r for r in reads if r <= 64) <= 1617 + 8 * 64
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert np.isfinite(history["val_loss"]).all() and len(history["train_loss"]) == 1
