"""`vae_core.export` from checkpoints trained in every backend: each format, MLP and conv, passes its verification in
its runtime (onnxruntime, tf.saved_model.load, the LiteRT interpreter, torch.export.load, jax.export.deserialize)
against the NumPy reference.

Per backend, a module fixture trains two small models for one epoch (an MLP, and a conv model of odd 9x7x2 images,
whose padding and cropping are asymmetric) and saves their checkpoints; the likelihoods differ by backend and
architecture, so all three are exported. Each test exports one checkpoint to one format (a few seconds).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import vae_core
from vae_core import TrainConfig, VAESpec
from vae_core.deploy import FORMATS, TOLERANCE, read_manifest
from vae_core.deploy.manifest import file_sha256, weights_sha256
from vae_core.registry import backend_of

SPECS = {"mlp": dict(input_dim=64, hidden_dims=(16,), latent_dim=3),
         "conv": dict(architecture="conv", image_shape=(9, 7, 2), conv_channels=(4, 4), kernel_size=3,
                      hidden_dims=(8,), latent_dim=3)}
LIKELIHOODS = {("torch", "mlp"): "bernoulli", ("torch", "conv"): "gaussian_learned",
               ("tf", "mlp"): "gaussian_learned", ("tf", "conv"): "gaussian"}


@pytest.fixture(scope="module")
def checkpoints(backend, tmp_path_factory):
    """{"mlp": path, "conv": path}: best.safetensors of a one-epoch run of each spec in `backend`."""
    folder, paths = tmp_path_factory.mktemp(f"export-{backend}"), {}
    for arch, fields in SPECS.items():
        spec = VAESpec(**fields, likelihood=LIKELIHOODS.get((backend, arch), "bernoulli"))
        x = np.random.default_rng(0).random((48, spec.input_dim), dtype=np.float32)
        vae_core.fit(vae_core.build(backend, spec, seed=0), x, x[:16], TrainConfig(epochs=1, batch_size=16),
                     out_dir=folder / arch, progress=False)
        paths[arch] = folder / arch / "best.safetensors"
    return paths


@pytest.mark.parametrize("arch", list(SPECS))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_passes_verification_in_its_runtime(backend, checkpoints, fmt, arch, tmp_path):
    path = checkpoints[arch]
    result = vae_core.export(path, tmp_path / "out", format=fmt)
    ckpt = vae_core.read_checkpoint(path)
    assert ckpt.backend == backend

    check = result.verification
    assert check.max_abs_error <= TOLERANCE and set(check.errors) >= {"encoder.mean", "encoder.log_var",
                                                                     "decoder.mean"}
    assert ("decoder.log_var" in check.errors) == (ckpt.spec.likelihood == "gaussian_learned")
    names = FORMATS[fmt].files()
    expected = set(names.values()) if names else {"saved_model.pb"}
    assert expected <= set(result.files) and "export.json" in result.files
    assert sorted(p.relative_to(result.out_dir).as_posix() for p in result.out_dir.rglob("*") if p.is_file()) == \
        list(result.files)
    assert not [p for p in tmp_path.iterdir() if p.name != "out"], "a staging folder was left behind"

    meta = read_manifest(result.out_dir)
    assert meta == json.loads(json.dumps(result.manifest))
    assert meta["format"] == fmt and VAESpec.from_dict(meta["spec"]) == ckpt.spec
    assert meta["source"] == {"checkpoint": str(path), "checkpoint_sha256": file_sha256(path), "backend": backend,
                              "weights_sha256": weights_sha256(ckpt.weights)}
    spec = ckpt.spec
    assert meta["encoder"]["inputs"] == [{"name": "x", "shape": [None, spec.input_dim], "dtype": "float32"}]
    assert [o["name"] for o in meta["decoder"]["outputs"]] == \
        ["mean", "log_var"][:2 if spec.likelihood == "gaussian_learned" else 1]
    assert meta["verification"]["max_abs_error"] == check.errors
    _holds_each_weight_once(result.out_dir, fmt, spec)


def _holds_each_weight_once(folder, fmt, spec):
    """A torch_export or jax_export half holds its own half's weights alone; the SavedModel, each weight once."""
    from vae_core.deploy.formats import part_bytes

    if fmt == "torch_export":
        import torch

        for part, size in part_bytes(spec).items():
            state = torch.export.load(str(folder / f"{part}.pt2")).state_dict
            assert 4 * sum(t.numel() for t in state.values()) == size, part
    elif fmt == "jax_export":  # the weights are constants in the module: a few kB of graph beside them
        for part, size in part_bytes(spec).items():
            assert size < (folder / f"{part}.jax_export").stat().st_size < size + 16384, part
    elif fmt == "saved_model":
        stored = sum(p.stat().st_size for p in (folder / "variables").glob("variables.data-*"))
        assert stored < 1.5 * 4 * spec.num_params + 4096, (stored, spec.num_params)


def test_a_model_in_memory_exports_like_its_checkpoint(source, target, tmp_path):
    """A model of one backend exported by another's framework (torch_export is torch's, saved_model TF's,
    jax_export JAX's): the files compute the reference of the model's own weights, and export.json names no
    checkpoint."""
    spec = VAESpec(**SPECS["mlp"], likelihood="gaussian")
    model = vae_core.build(source, spec, seed=3)
    fmt = next(name for name, f in FORMATS.items()
               if f.backend == target and name in ("torch_export", "saved_model", "jax_export"))
    result = vae_core.export(model, tmp_path / "out", format=fmt)
    weights = backend_of(model)[1].weights.export_weights(model)
    assert result.manifest["source"] == {"checkpoint": None, "checkpoint_sha256": None, "backend": source,
                                         "weights_sha256": weights_sha256(weights)}
    vae_core.save_checkpoint(tmp_path / "m.safetensors", model)  # the same weights, through a file: the same hash
    assert weights_sha256(vae_core.read_checkpoint(tmp_path / "m.safetensors").weights) == weights_sha256(weights)
    assert result.verification.max_abs_error <= TOLERANCE

