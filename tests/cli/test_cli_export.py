"""`vae export` end to end, in-process: a trained checkpoint to a folder that serves it, what the command prints,
--no-verify, and the failures: files that miss the tolerance (exit 1, nothing left) and a missing runtime (exit 2).
Each format's verification from checkpoints of both backends is tests/conformance/test_conformance_export.py's."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from vae_core import read_checkpoint
from vae_core.cli import main
from vae_core.deploy.manifest import file_sha256

TINY = ["--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "256", "--no-progress",
        "--no-plots"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(out), "--epochs", "1", *TINY]) == 0
    return out / "best.safetensors"


def test_vae_export_writes_a_verified_folder_that_serves_the_checkpoint(checkpoint, tmp_path, capsys):
    import torch

    out = tmp_path / "exports" / "pt2"  # parents made as needed
    assert main(["export", str(checkpoint), "--format", "torch_export", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"vae export: wrote {out} (torch_export): decoder.pt2 ")
    assert printed[1].startswith("vae export: verified in torch.export.load ") and "tolerance 1e-05" in printed[1]
    assert sorted(p.name for p in out.iterdir()) == ["decoder.pt2", "encoder.pt2", "export.json"]
    meta = json.loads((out / "export.json").read_text())
    assert meta["format"] == "torch_export" and meta["source"]["checkpoint_sha256"] == file_sha256(checkpoint)
    assert meta["verification"]["max_abs_error"]["encoder.mean"] <= 1e-5

    encoder = torch.export.load(str(out / "encoder.pt2")).module()  # what the deploy page shows
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    from backends.torch.export import encoder as encoder_of
    from vae_core import load_checkpoint

    model = load_checkpoint(checkpoint, "torch")
    with torch.no_grad():
        for got, want in zip(encoder(torch.from_numpy(x)), encoder_of(model)(torch.from_numpy(x))):
            assert torch.equal(got, want)


def test_no_verify_writes_without_running_the_files(checkpoint, tmp_path, capsys):
    assert main(["export", str(checkpoint), "--format", "saved_model", "--out", str(tmp_path / "sm"),
                 "--no-verify"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "vae export: not verified (--no-verify)"
    meta = json.loads((tmp_path / "sm" / "export.json").read_text())
    assert meta["verification"] is None and meta["encoder"]["signature"] == "encode"
    assert (tmp_path / "sm" / "saved_model.pb").is_file()


def test_files_past_the_tolerance_exit_1_and_leave_nothing(checkpoint, tmp_path, capsys, monkeypatch):
    from vae_core.deploy import verify

    monkeypatch.setattr(verify, "TOLERANCE", 0.0)  # float32 files never match float64 to the last bit
    assert main(["export", str(checkpoint), "--format", "torch_export", "--out", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae export: error: the torch_export export: encoder.mean differs "
                                                   "from the NumPy reference of the checkpoint by ")
    assert "the files were removed" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no folder, no staging folder


def test_a_missing_runtime_exits_2_naming_the_extra(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    assert main(["export", str(checkpoint), "--format", "litert", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("vae export: error: --format 'litert' needs 'ai_edge_litert' to verify litert in its runtime, "
                   "which is not installed; install it with: pip install 'vae-core[export]', or pass --no-verify to "
                   "skip the check")
    assert list(tmp_path.iterdir()) == []
    assert read_checkpoint(checkpoint).spec.latent_dim == 2  # the checkpoint is only read
