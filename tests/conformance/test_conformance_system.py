"""The memory guard and the thread settings, the same in every backend (issue 31)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_core import MemoryLimitError, TrainConfig, VAESpec, build, fit, load_checkpoint, save_checkpoint
from vae_core.system import memory

ROOT = Path(__file__).resolve().parents[2]
SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2)
FAST = ["--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--no-plots",
        "--no-progress", "--device", "cpu"]


def test_build_and_load_refuse_a_model_that_cannot_fit_unless_told(backend, monkeypatch, tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build(backend, SPEC, seed=0))
    monkeypatch.setattr(memory, "available_memory", lambda: (2 ** 20, "a test"))  # 1 MiB
    with pytest.raises(MemoryLimitError, match=r"this process can have 0\.0 GiB \(a test\).*check_memory=False"):
        build(backend, SPEC, seed=0)
    with pytest.raises(MemoryLimitError, match="check_memory=False"):
        load_checkpoint(path, backend)
    model = load_checkpoint(path, backend, check_memory=False)  # the override
    assert model.spec == SPEC and build(backend, SPEC, seed=0, check_memory=False).spec == SPEC


def test_an_mlp_on_large_images_is_told_of_conv(backend):
    with pytest.warns(UserWarning, match=r"an MLP on 128x128x3 images has 835,652 parameters, .*architecture='conv'"):
        build(backend, VAESpec(image_shape=(128, 128, 3), hidden_dims=(8,), latent_dim=2), seed=0)


# `vae` in a child that prints its own peak resident memory (VmHWM: of its image since exec; ru_maxrss would also
# count the pages the fork shared with this test process, which holds torch and TensorFlow) on stdout's last line
_PEAK = ("import sys; from vae_core.cli import main\n"
         "try:\n    code = main(sys.argv[1:])\n"
         "finally:\n    print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
         "sys.exit(code)")


def test_vae_train_refuses_a_model_too_big_before_writing_or_allocating(backend, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _PEAK, "train", "--backend", backend, *FAST, "--hidden-dims",
                           "4000000000", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("vae train: error: training this model (") and \
        "--no-memory-check" in lines[0], proc.stderr
    assert not out.exists()  # nothing written
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    assert peak_kib * 1024 < 1024 ** 3  # never near the model's terabytes: refused before allocating


def test_vae_train_threads_flag(backend, tmp_path):
    """--threads N trains with N threads on a backend that can set them; on one that cannot (JAX), it is one line
    naming the backends it applies to, exit 2, nothing written."""
    from vae_core.cli.backend_options import backends_of

    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "vae_core.cli", "train", "--backend", backend, *FAST, "--threads",
                           "1", "--out", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    if backend not in backends_of("--threads"):
        assert proc.returncode == 2 and "--threads 1 applies to backends" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
        return
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stderr.splitlines() if line.startswith("vae train: training:"))
    assert ", threads 1 -> " in header, header


def test_fit_takes_a_thread_count_in_force(backend):
    """threads=N trains with N threads where the framework can set them now (torch, and TF once told before it
    started); a count it cannot take (TF's once started, any for JAX) is refused with the fix."""
    model = build(backend, SPEC, seed=0)
    x = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    config = TrainConfig(epochs=1, batch_size=32)
    if backend == "jax":  # XLA sizes its CPU pool when JAX starts: a count is refused, with the fix
        with pytest.raises(ValueError, match=r"threads=1: the JAX backend cannot set its CPU threads: .*taskset"):
            fit(model, x, None, config, progress=False, threads=1)
        return
    if backend == "tf":
        import tensorflow as tf

        in_force = tf.config.threading.get_intra_op_parallelism_threads()
        other = (in_force or 2) + 1
        with pytest.raises(ValueError, match=rf"threads={other}: TensorFlow has started .* call "
                                             rf"backends.tf.device.set_threads\({other}\) before"):
            fit(model, x, None, config, progress=False, threads=other)
        if not in_force:
            return
        threads = in_force
    else:
        threads = 1
    history = fit(model, x, None, config, progress=False, threads=threads)
    assert len(history["train_loss"]) == 1
