"""A disk that refuses a checkpoint write (here EFBIG, from a file-size limit on the process: the same path as
ENOSPC or EIO) gives one line naming the file and the OS error, exit status 1, and the previous checkpoints
untouched."""
import os
import re
import resource
import subprocess
import sys
from pathlib import Path


from vae_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--dataset", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--device", "cpu", "--no-plots",
        "--no-progress"]


def test_a_refused_checkpoint_write_is_one_line_exit_1_and_loses_nothing(backend, tmp_path):  # every backend
    out = tmp_path / "run"
    assert main(["train", "--backend", backend, "--out", str(out), "--epochs", "1", *ARGS]) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.safetensors")}
    limit = min(len(b) for b in before.values()) // 2  # below one checkpoint, above run.json

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "vae_core.cli", "train", "--backend", backend, "--out", str(out),
                           "--resume", "--epochs", "2", *ARGS], preexec_fn=limit_file_size, capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=180)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vae train: error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.fullmatch(rf"vae train: error: \[Errno 27\] cannot write '{re.escape(str(out))}/(last|best)"
                        rf"\.safetensors': File too large; the previous checkpoint is untouched", errors[0]), errors
    assert {p.name: p.read_bytes() for p in out.glob("*.safetensors")} == before
    assert not list(out.glob(".*.tmp"))  # the refused temp file is gone
