"""One run per output folder (`vae_core.io.run_lock`): a second run is refused at once and told who holds the folder,
a lock left by a dead process is taken over with a warning, and `vae train` into a busy folder exits 2."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_core.cli import main
from vae_core.io.run_lock import LOCK_FILE, RunLockedError, run_lock

ROOT = Path(__file__).resolve().parents[2]
HOLD = "import sys, time\nfrom vae_core.io.run_lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


def _holder(folder: Path) -> subprocess.Popen:
    """Another process that holds the folder's lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def test_a_held_folder_is_refused_naming_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"out_dir .* is in use by another run \(pid {proc.pid} on host "
                                                 rf"{socket.gethostname()}\); wait for it to finish"):
            with run_lock(tmp_path):
                pass
    finally:
        _stop(proc)


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    proc = _holder(tmp_path)
    _stop(proc)  # SIGKILL: the lock file still names it, but the kernel has dropped its flock
    with pytest.warns(UserWarning, match=rf"taking over the run lock left by pid {proc.pid} on host"):
        with run_lock(tmp_path):
            assert json.loads((tmp_path / LOCK_FILE).read_text()) == {"pid": os.getpid(),
                                                                       "host": socket.gethostname()}
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly: nothing for the next run to take over


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    probe = "import sys\nfrom vae_core.io.run_lock import run_lock\nwith run_lock(sys.argv[1]):\n    pass\n"
    with run_lock(tmp_path):
        with run_lock(tmp_path):  # the CLI holds the folder, the trainer inside takes it again
            pass
        other = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
        assert other.returncode != 0 and "RunLockedError" in other.stderr  # still held after the inner block
    assert subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT).returncode == 0


def test_fit_into_a_busy_folder_raises_before_training(backend, tmp_path):  # backend: every registered one
    from vae_core import TrainConfig, VAESpec, build, fit

    model = build(backend, VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2, image_shape=(4, 4)), seed=0)
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"pid {proc.pid}"):
            fit(model, np.full((8, 16), 0.5, np.float32), None, TrainConfig(epochs=1), out_dir=tmp_path,
                progress=False)
    finally:
        _stop(proc)
    assert not (tmp_path / "last.safetensors").exists()


def test_a_second_vae_train_into_a_busy_folder_exits_2_naming_the_holder(backend, tmp_path, capsys):
    proc = _holder(tmp_path)
    try:
        status = main(["train", "--backend", backend, "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path),
                       "--device", "cpu", "--no-plots", "--no-progress"])
    finally:
        _stop(proc)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [f"vae train: error: --out {str(tmp_path)!r} is in use by another run (pid "
                                   f"{proc.pid} on host {socket.gethostname()}); wait for it to finish, stop it, "
                                   f"or pass another folder"]
    assert not (tmp_path / "run.json").exists()  # refused before writing anything
