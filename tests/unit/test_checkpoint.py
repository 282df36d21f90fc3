"""Checkpoint schema v2 on NumPy dicts: round trips, validation messages, hostile files, atomic writes."""
import hashlib
import json
import os
import pickle
import struct

import numpy as np
import pytest

from vae_core import AdamState, Checkpoint, CheckpointError, TrainConfig, VAESpec, init_weights
from vae_core.io.checkpoint import read_checkpoint, write_checkpoint

SPEC = VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2)


def make_ckpt(**kw):
    w = init_weights(SPEC, seed=1)
    adam = AdamState(step=7, m={k: np.full_like(v, 0.5) for k, v in w.items()},
                     v={k: np.full_like(v, 0.25) for k, v in w.items()})
    args = dict(spec=SPEC, weights=w, train_config=TrainConfig(epochs=3), epoch=2,
                history={"train_loss": [3.0, 2.0]}, adam=adam, trainer_state={"lr": 1e-3, "bad_epochs": 1},
                backend="torch")
    args.update(kw)
    return Checkpoint(**args)


def test_round_trip_keeps_everything(tmp_path):
    ckpt = make_ckpt()
    path = write_checkpoint(tmp_path / "c.safetensors", ckpt)
    back = read_checkpoint(path)
    assert back.spec == SPEC and back.train_config == TrainConfig(epochs=3)
    assert (back.epoch, back.history, back.trainer_state, back.backend) == (2, {"train_loss": [3.0, 2.0]},
                                                                            {"lr": 1e-3, "bad_epochs": 1}, "torch")
    assert back.adam.step == 7
    for name, arr in ckpt.weights.items():
        np.testing.assert_array_equal(back.weights[name], arr)
        np.testing.assert_array_equal(back.adam.m[name], ckpt.adam.m[name])
        np.testing.assert_array_equal(back.adam.v[name], ckpt.adam.v[name])


def test_round_trip_without_optimizer(tmp_path):
    path = write_checkpoint(tmp_path / "c.safetensors", make_ckpt(adam=None, train_config=None))
    back = read_checkpoint(path)
    assert back.adam is None and back.train_config is None
    assert set(back.weights) == set(SPEC.weight_shapes())


def test_wrong_shape_names_tensor_expected_and_found():
    w = init_weights(SPEC, 0)
    w["encoder.0.kernel"] = w["encoder.0.kernel"].T.copy()
    with pytest.raises(CheckpointError, match=r"'encoder.0.kernel': expected shape \(16, 8\) float32, "
                                              r"found shape \(8, 16\) float32"):
        Checkpoint(spec=SPEC, weights=w)


def test_wrong_and_missing_names_are_listed():
    w = init_weights(SPEC, 0)
    w["encoder.0.weight"] = w.pop("encoder.0.kernel")
    with pytest.raises(CheckpointError, match=r"missing \['encoder.0.kernel'\], unexpected \['encoder.0.weight'\]"):
        Checkpoint(spec=SPEC, weights=w)


def test_wrong_dtype_is_rejected():
    w = init_weights(SPEC, 0)
    w["decoder.out.bias"] = w["decoder.out.bias"].astype(np.float64)
    with pytest.raises(CheckpointError, match=r"'decoder.out.bias': expected shape \(16,\) float32, "
                                              r"found shape \(16,\) float64"):
        Checkpoint(spec=SPEC, weights=w)


def test_non_finite_weights_never_reach_disk(tmp_path):
    w = init_weights(SPEC, 0)
    w["encoder.mu.bias"][0] = np.nan
    with pytest.raises(CheckpointError, match="'encoder.mu.bias' holds NaN or inf"):
        Checkpoint(spec=SPEC, weights=w)


def test_checkpoint_from_another_spec_is_rejected_on_read(tmp_path):
    path = write_checkpoint(tmp_path / "c.safetensors", make_ckpt(adam=None))
    data = path.read_bytes()
    # Rewrite the metadata to claim latent_dim=3: every latent-facing tensor must then mismatch.
    from safetensors.numpy import load, save
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        meta = json.loads(f.metadata()["vae_core"])
    meta["spec"]["latent_dim"] = 3
    other = tmp_path / "other.safetensors"
    text = json.dumps(meta)  # re-signed, so the header checksum holds and the shape check speaks
    other.write_bytes(save(load(data), metadata={"vae_core": text,
                                                 "vae_core.sha256": hashlib.sha256(text.encode()).hexdigest()}))
    with pytest.raises(CheckpointError, match=r"other.safetensors.*'encoder.mu.kernel': expected shape \(8, 3\)"):
        read_checkpoint(other)


def test_truncated_file_is_rejected(tmp_path):
    path = write_checkpoint(tmp_path / "c.safetensors", make_ckpt())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        read_checkpoint(cut)


def test_file_that_is_not_safetensors_is_rejected(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("these are not tensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        read_checkpoint(bad)


class _Boom:
    """Unpickling this creates a marker file: proof that something unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_renamed_to_safetensors_is_never_unpickled(tmp_path):
    marker = tmp_path / "UNPICKLED"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"state_dict": _Boom(str(marker))}))
    with pytest.raises(CheckpointError):
        read_checkpoint(evil)
    assert not marker.exists()


def test_header_claiming_huge_sizes_is_rejected(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}}).encode()
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        read_checkpoint(huge)
    absurd = tmp_path / "absurd.safetensors"
    absurd.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        read_checkpoint(absurd)


def test_safetensors_without_our_metadata_is_rejected(tmp_path):
    from safetensors.numpy import save_file
    plain = tmp_path / "plain.safetensors"
    save_file(init_weights(SPEC, 0), str(plain))
    with pytest.raises(CheckpointError, match="not a vae_core checkpoint"):
        read_checkpoint(plain)


def test_unknown_schema_version_is_rejected(tmp_path):
    from safetensors.numpy import save_file
    future = tmp_path / "future.safetensors"
    save_file(init_weights(SPEC, 0), str(future),
              metadata={"vae_core": json.dumps({"schema_version": 3, "spec": SPEC.to_dict()})})
    with pytest.raises(CheckpointError, match="schema_version 3 is not supported; this vae_core reads schema_version 1, 2"):
        read_checkpoint(future)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="directory .* does not exist"):
        write_checkpoint(tmp_path / "no" / "dir" / "c.safetensors", make_ckpt())


def test_failed_write_keeps_the_last_good_file(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "last.safetensors", make_ckpt(epoch=1))
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(path, make_ckpt(epoch=2))
    assert path.read_bytes() == before
    assert read_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no temp file left behind


def test_checkpoint_gets_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_checkpoint(tmp_path / "c.safetensors", make_ckpt())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others can read a shared checkpoint
