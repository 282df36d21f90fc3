"""The NumPy core of `vae_core.deploy`: the formats' tensors and limits, the verification rule, the output folder's
checks and its staging (nothing half-written), export.json's hashes, and the reference forward's halves. No
framework: verification is driven by runners made from the reference itself."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vae_core import VAESpec, init_weights
from vae_core.deploy import formats, verify
from vae_core.deploy.api import check_out_dir, staging
from vae_core.deploy.manifest import weights_sha256
from vae_core.deploy.verify import TOLERANCE, ExportVerificationError
from vae_core.model.forward import decoder_mean, reference_decode, reference_encode, reference_forward

MLP = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=3, likelihood="gaussian_learned")
CONV = VAESpec(architecture="conv", image_shape=(9, 7, 2), conv_channels=(4, 4), kernel_size=3, hidden_dims=(8,),
               latent_dim=3)


def test_the_halves_compose_to_the_reference_forward_pass():
    for spec in (MLP, CONV, MLP.replace(likelihood="bernoulli")):
        weights = init_weights(spec, 1)
        rng = np.random.default_rng(2)
        x, eps = rng.random((5, spec.input_dim)), rng.standard_normal((5, spec.latent_dim))
        out, mu, log_var = reference_forward(spec, weights, x, eps)
        assert all(np.array_equal(a, b) for a, b in zip((mu, log_var), reference_encode(spec, weights, x)))
        assert np.array_equal(out, reference_decode(spec, weights, mu + np.exp(0.5 * log_var) * eps))
        mean = decoder_mean(spec, out)
        if spec.likelihood == "bernoulli":
            np.testing.assert_allclose(mean[0], 1 / (1 + np.exp(-out)), rtol=1e-12)
        assert [m.shape for m in mean] == [(5, spec.input_dim)] * (2 if spec.likelihood == "gaussian_learned" else 1)


def test_signatures_name_every_tensor_with_a_dynamic_batch():
    sig = formats.signatures(MLP)
    assert sig["encoder"] == {"inputs": [("x", (None, 64))], "outputs": [("mean", (None, 3)), ("log_var", (None, 3))]}
    assert sig["decoder"] == {"inputs": [("z", (None, 3))], "outputs": [("mean", (None, 64)), ("log_var", (None, 64))]}
    assert formats.signatures(CONV)["decoder"]["outputs"] == [("mean", (None, 126))]
    assert {name: f.files() for name, f in formats.FORMATS.items()} == {
        "onnx": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}, "saved_model": None,
        "litert": {"encoder": "encoder.tflite", "decoder": "decoder.tflite"},
        "torch_export": {"encoder": "encoder.pt2", "decoder": "decoder.pt2"},
        "jax_export": {"encoder": "encoder.jax_export", "decoder": "decoder.jax_export"}}


def test_an_unknown_format_names_the_formats_and_the_nearest():
    with pytest.raises(ValueError, match=r"export\.format must be one of onnx, saved_model, litert, torch_export, "
                                         r"jax_export; got 'tflite'\. Did you mean 'litert'\?"):
        formats.check_format("tflite", "export.format")
    for alias in ("jax", "stablehlo", "StableHLO"):
        with pytest.raises(ValueError, match=rf"got '{alias}'\. Did you mean 'jax_export'\?"):
            formats.check_format(alias, "export.format")
    with pytest.raises(ValueError, match=r"got 'onx'\. Did you mean 'onnx'\?"):
        formats.check_format("onx", "export.format")


def test_the_flatbuffer_formats_refuse_a_half_past_two_gib_and_the_others_take_it():
    """A LiteRT file and a serialized jax.export.Exported are each one FlatBuffer (jax's serialization raises
    flatbuffers' BuilderSizeError past 2 GiB), and hold the weights inside."""
    big = VAESpec(input_dim=4096, hidden_dims=(140_000,), latent_dim=2)  # encoder.0: 4096 x 140000 float32
    assert formats.part_bytes(big)["encoder"] > 2 ** 31
    assert formats.part_bytes(MLP) == {"encoder": 4 * (64 * 16 + 16 + 2 * (16 * 3 + 3)),
                                       "decoder": 4 * (3 * 16 + 16 + 16 * 128 + 128)}
    with pytest.raises(ValueError, match=r"'litert' cannot hold this checkpoint's encoder: its float32 weights are "
                                         r"2\.1 GiB, and a LiteRT file is one FlatBuffer"):
        formats.check_expressible(formats.FORMATS["litert"], big, "--format")
    with pytest.raises(ValueError, match=r"'jax_export' cannot hold this checkpoint's encoder: its float32 weights "
                                         r"are 2\.1 GiB, and a serialized jax\.export\.Exported is one FlatBuffer, "
                                         r"which addresses at most 2 GiB; export it as 'onnx', 'saved_model' or "
                                         r"'torch_export'"):
        formats.check_expressible(formats.FORMATS["jax_export"], big, "--format")
    for name in ("onnx", "saved_model", "torch_export"):
        formats.check_expressible(formats.FORMATS[name], big, "--format")


def test_a_missing_runtime_names_the_extra_and_the_way_around(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ImportError, match=r"--format 'onnx' needs 'onnxruntime' to verify onnx in its runtime, "
                                          r"which is not installed; install it with: pip install 'vae-core\[export\]', "
                                          r"or pass --no-verify to skip the check"):
        formats.check_installed(formats.FORMATS["onnx"], True, "--format", "--no-verify")
    formats.check_installed(formats.FORMATS["onnx"], False, "--format", "--no-verify")  # not needed unverified


def _runners(spec, weights, scale: float = 0.0, flaky: bool = False):
    """Runners computing the reference in float32, off by `scale` * max(1, |ref|), or different on every call."""
    calls = {"n": 0}

    def make(part):
        def run(rows):
            calls["n"] += 1
            ref = reference_encode(spec, weights, rows) if part == "encoder" else \
                decoder_mean(spec, reference_decode(spec, weights, rows))
            bump = scale + (1e-9 * calls["n"] if flaky else 0.0)
            return tuple((r + bump * np.maximum(1.0, np.abs(r))).astype(np.float32) for r in ref)
        return run
    return {part: make(part) for part in formats.PARTS}


def test_verification_measures_each_output_and_refuses_past_the_tolerance():
    weights = init_weights(MLP, 0)
    good = verify.verify(_runners(MLP, weights), MLP, weights, "a runtime", "the test export")
    assert set(good.errors) == {"encoder.mean", "encoder.log_var", "decoder.mean", "decoder.log_var"}
    assert 0 < good.max_abs_error < 1e-6  # float32 rounding of the float64 reference
    assert good.to_dict()["tolerance"] == TOLERANCE == 1e-5
    with pytest.raises(ExportVerificationError, match=r"the test export: encoder\.mean differs from the NumPy "
                                                      r"reference of the checkpoint by .* over the tolerance 1e-05"):
        verify.verify(_runners(MLP, weights, scale=3e-5), MLP, weights, "a runtime", "the test export")
    with pytest.raises(ExportVerificationError, match=r"differs between two runs on the same batch"):
        verify.verify(_runners(MLP, weights, flaky=True), MLP, weights, "a runtime", "the test export")
    short = dict(_runners(MLP, weights), decoder=lambda rows: (np.zeros((len(rows), 64), np.float32),))
    with pytest.raises(ExportVerificationError, match=r"the decoder returned"):
        verify.verify(short, MLP, weights, "a runtime", "the test export")


def test_the_output_folder_must_be_new_or_empty_and_writable(tmp_path):
    assert check_out_dir(tmp_path / "new" / "deeper", "--out") == (tmp_path / "new" / "deeper").absolute()
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty", "--out").name == "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"--out '.*full' is not empty \(it holds 1 entry, such as 'a\.txt'\)"):
        check_out_dir(tmp_path / "full", "--out")
    with pytest.raises(NotADirectoryError, match=r"is inside a file"):
        check_out_dir(tmp_path / "full" / "a.txt" / "x", "--out")
    with pytest.raises(TypeError, match=r"--out must be a folder path"):
        check_out_dir(3, "--out")
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path)) == ["empty", "full"]


def test_staging_renames_whole_or_leaves_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError):
        with staging(target) as folder:
            (folder / "half.onnx").write_bytes(b"x")
            raise RuntimeError("the exporter failed")
    assert list(tmp_path.iterdir()) == []  # the staging folder and the parents it made are gone
    (tmp_path / "empty").mkdir()
    with staging(tmp_path / "empty") as folder:
        (folder / "encoder.onnx").write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["empty"] and os.listdir(tmp_path / "empty") == ["encoder.onnx"]
    assert (tmp_path / "empty").stat().st_mode & 0o755 == 0o755  # the mode mkdir gives, not mkdtemp's 0700


def test_the_weights_hash_is_the_hash_of_the_checkpoint_checksums(tmp_path):
    import json
    import hashlib

    from vae_core import Checkpoint, read_checkpoint, write_checkpoint
    from vae_core.io.checkpoint import METADATA_KEY

    weights = init_weights(MLP, 0)
    path = write_checkpoint(tmp_path / "m.safetensors", Checkpoint(spec=MLP, weights=weights))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        sums = json.loads(f.metadata()[METADATA_KEY])["checksums"]["tensors"]
    assert weights_sha256(weights) == hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()
    assert weights_sha256(read_checkpoint(path).weights) == weights_sha256(weights)
    assert weights_sha256({**weights, "decoder.out.bias": weights["decoder.out.bias"] + 1}) != weights_sha256(weights)


def test_read_spec_reads_the_header_alone(tmp_path):
    from vae_core import Checkpoint, CheckpointError, write_checkpoint
    from vae_core.io.checkpoint import read_spec

    path = write_checkpoint(tmp_path / "m.safetensors", Checkpoint(spec=CONV, weights=init_weights(CONV, 0)))
    assert read_spec(path) == CONV
    Path(tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        read_spec(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        read_spec(tmp_path / "missing.safetensors")
