"""Kill and preempt `vae train` at random points, resume it with --resume, and get the uninterrupted result.

For each backend: one uninterrupted run, then one run that is killed (SIGKILL) mid-epoch at a random moment;
preempted with SIGTERM mid-epoch, and again with SIGTERM while the step checkpoint is being written (exit 143,
one line naming the epoch, the step and how to resume); killed in the middle of
a checkpoint write (made slow with the VAE_CORE_SLOW_WRITE_SECONDS test hook, so the kill lands after the temp
file is written and before it replaces the checkpoint); and resumed to the end. After every kill the latest checkpoint must load;
at the end the weights, Adam state and history must equal the uninterrupted run's bit for bit (CPU, fixed seed:
data order and noise are functions of (seed, epoch), so an epoch that is re-run draws what it drew before).
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vae_core import read_checkpoint
from vae_core.io.atomic import SLOW_WRITE_ENV
from vae_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 10
# The 8x8 digits in batches of 8: 180 steps, a few tenths of a second per epoch, so a random kill lands
# mid-epoch. The high LR makes the validation loss stall once, so the plateau schedule halves the LR: its
# state must survive the kills too.
ARGS = ["--dataset", "digits", "--hidden-dims", "64,32", "--latent-dim", "2", "--batch-size", "8",
        "--learning-rate", "0.03", "--epochs", str(EPOCHS), "--reduce-lr-on-plateau", "--lr-plateau-patience", "0",
        "--no-plots", "--no-progress"]
TIMEOUT = 120  # seconds for one subprocess; a hang fails the test instead of stalling CI


def start(out: Path, backend: str, *extra: str, slow_write: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    env.pop(SLOW_WRITE_ENV, None)
    if slow_write:
        env[SLOW_WRITE_ENV] = str(slow_write)
    return subprocess.Popen([sys.executable, "-m", "vae_core.cli", "train", "--backend", backend, "--out", str(out),
                             "--device", "cpu", *ARGS, *extra], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL


def epoch_of(path: Path) -> int:
    try:
        return read_checkpoint(path).epoch
    except Exception:  # not there yet (or being replaced right now: os.replace is atomic, so never half)
        return 0


def temp_files(out: Path) -> list[Path]:
    return sorted(out.glob(".*.safetensors.*.tmp"))


def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(backend, tmp_path):
    rng = random.Random(f"kill-{backend}")  # random kill points, the same ones on every run of the test
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["train", "--backend", backend, "--out", str(whole), "--device", "cpu", *ARGS]) == 0  # in-process

    # 1. Mid-epoch: once epoch 1 is saved, wait a random fraction of an epoch and kill. An epoch's length is the
    # uninterrupted run's (its later epochs: the first carries a compile), at most 0.3 s (JAX's take ~0.05 s).
    epoch_seconds = min(0.3, float(np.median(json.loads((whole / "history.json").read_text())["seconds"][1:])))
    proc = start(killed, backend)
    wait_for(lambda: epoch_of(killed / "last.safetensors") >= 1, proc, "the first checkpoint")
    time.sleep(rng.uniform(0.0, epoch_seconds))
    kill(proc)
    saved = read_checkpoint(killed / "last.safetensors")  # always loads
    assert 1 <= saved.epoch < EPOCHS

    # 2. Preempted: SIGTERM mid-epoch, and a second SIGTERM while the step checkpoint is written (slowly).
    for signum, extra_signal in ((signal.SIGTERM, True),):  # SIGINT takes the same path: tests/cli/test_cli.py
        done = epoch_of(killed / "last.safetensors")
        proc = start(killed, backend, "--resume", slow_write=0.5 if extra_signal else 0.0)
        wait_for(lambda: epoch_of(killed / "last.safetensors") > done, proc, "an epoch of the resumed run")
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signum)
        if extra_signal:
            wait_for(lambda: temp_files(killed), proc, "the step checkpoint's write")
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 128 + signum, err
        stopped = [line for line in err.splitlines() if "stopped by" in line]
        assert len(stopped) == 1 and "Traceback" not in err, err
        match = re.fullmatch(rf"vae train: stopped by {signum.name} at epoch (\d+), step (\d+) \(1-based, the last "
                             rf"step done\); resume with: vae train --out {re.escape(str(killed))} --resume",
                             stopped[0])
        assert match, stopped[0]
        ckpt = read_checkpoint(killed / "last.safetensors")  # loads: the second signal did not corrupt it
        position = ckpt.trainer_state.get("position")
        epoch, step = int(match[1]), int(match[2])
        if position:  # mid-epoch: a step checkpoint of exactly that step
            assert (position["epoch"], position["step"], ckpt.epoch) == (epoch, step, epoch - 1)
        else:  # the stop landed at the end of an epoch: the checkpoint is that epoch's
            assert ckpt.epoch == epoch
        assert ckpt.epoch < EPOCHS

    # 3. During a checkpoint write: resume with slow writes, kill while the temp file waits to replace the checkpoint.
    proc = start(killed, backend, "--resume", slow_write=2.0)
    wait_for(lambda: temp_files(killed), proc, "a checkpoint write")
    time.sleep(rng.uniform(0.0, 0.5))
    kill(proc)
    assert temp_files(killed), "the kill should have landed inside the slow write"
    after = read_checkpoint(killed / "last.safetensors")  # the previous complete file, not the new one in the temp file
    assert after.epoch >= saved.epoch
    for name in ("best.safetensors",):
        read_checkpoint(killed / name)

    # 4. Resume to the end, in this process (the killed runs left only their files behind).
    assert main(["train", "--backend", backend, "--out", str(killed), "--device", "cpu", *ARGS, "--resume"]) == 0
    assert not temp_files(killed), "resume should remove the killed write's temp file"
    a, b = read_checkpoint(whole / "last.safetensors"), read_checkpoint(killed / "last.safetensors")
    assert b.epoch == a.epoch == EPOCHS
    for name, arr in a.weights.items():
        np.testing.assert_array_equal(b.weights[name], arr, err_msg=name)
        np.testing.assert_array_equal(b.adam.m[name], a.adam.m[name], err_msg=f"adam.m.{name}")
        np.testing.assert_array_equal(b.adam.v[name], a.adam.v[name], err_msg=f"adam.v.{name}")
    assert b.adam.step == a.adam.step and b.trainer_state == a.trainer_state
    for key, values in a.history.items():
        if key != "seconds":  # wall time is the one thing allowed to differ
            assert b.history[key] == values, key
    assert a.history["lr"][-1] < a.history["lr"][0], "the plateau schedule should have acted (its state is resumed)"
