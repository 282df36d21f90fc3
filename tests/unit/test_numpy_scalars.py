"""NumPy integer and float scalars are taken wherever a Python number is, and stored as plain Python numbers (issue
32): `TrainConfig(batch_size=np.int64(16))` once trained an epoch, then failed writing its checkpoint ("Object of
type int64 is not JSON serializable")."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, build, evaluate, fit, read_checkpoint
from vae_core.checks import as_float, as_int, check_float, check_int

INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
FLOATS = (np.float16, np.float32, np.float64)


@pytest.mark.parametrize("kind", INTS)
def test_check_int_takes_numpy_integers_as_plain_ints(kind):
    value = check_int("o", "n", kind(7), minimum=1)
    assert value == 7 and type(value) is int


@pytest.mark.parametrize("kind", FLOATS + INTS)
def test_check_float_takes_numpy_numbers_as_plain_floats(kind):
    value = check_float("o", "x", kind(2), low=0.0)
    assert value == 2.0 and type(value) is float


@pytest.mark.parametrize("value", [True, np.True_, np.False_, 2.0, np.float32(2), "2", None, np.array([2])])
def test_as_int_refuses_what_is_not_an_integer(value):
    assert as_int(value) is None


@pytest.mark.parametrize("value", [True, np.True_, "1e-3", None, 10 ** 400, 1 + 0j])
def test_as_float_refuses_what_is_not_a_real_number(value):
    assert as_float(value) is None  # 10**400: too large for a float, None rather than an OverflowError


def test_check_float_names_an_int_too_large_for_a_float():
    with pytest.raises(ValueError, match=r"o\.x must be a finite number; got 1000000000"):
        check_float("o", "x", 10 ** 400)


def test_spec_stores_plain_numbers():
    spec = VAESpec(input_dim=np.int64(64), hidden_dims=(np.int64(16), np.uint8(8)), latent_dim=np.int32(2),
                   beta=np.float32(0.5), image_shape=(np.int64(8), np.int64(8)), conv_channels=np.array([4, 8]),
                   kernel_size=np.int16(3), architecture="conv")  # conv: to_dict keeps its fields
    for name in ("input_dim", "latent_dim", "kernel_size"):
        assert type(getattr(spec, name)) is int, name
    assert type(spec.beta) is float and spec.beta == 0.5
    for name in ("hidden_dims", "image_shape", "conv_channels"):
        assert all(type(v) is int for v in getattr(spec, name)), name
    assert spec.hidden_dims == (16, 8)
    assert VAESpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_input_dim_from_a_numpy_image_shape():
    spec = VAESpec(image_shape=np.array([8, 8]))
    assert spec.input_dim == 64 and type(spec.input_dim) is int and spec.image_shape == (8, 8)


def test_config_stores_plain_numbers():
    config = TrainConfig(batch_size=np.int64(16), epochs=np.uint8(2), learning_rate=np.float32(1e-3),
                         adam_beta1=np.float64(0.9), adam_eps=np.float16(1e-4), seed=np.int32(3),
                         grad_clip_norm=np.float32(1), lr_plateau_patience=np.int64(0),
                         early_stopping_patience=np.int64(2), checkpoint_every_steps=np.int64(5),
                         reduce_lr_on_plateau=np.True_)
    for name, value in config.to_dict().items():
        assert type(value) in (int, float, bool), (name, type(value))
    assert config.batch_size == 16 and config.learning_rate == pytest.approx(1e-3)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_fit_with_numpy_numbers_writes_its_checkpoint(backend, tmp_path):
    """The run of the issue: numbers from NumPy in the spec, the config and fit's and evaluate's keywords; the
    checkpoint is written and reads back with plain numbers."""
    spec = VAESpec(input_dim=np.int64(64), hidden_dims=(np.int64(16),), latent_dim=np.int64(2))
    model = build(backend, spec, seed=np.int64(0))
    x = np.random.default_rng(0).random((24, 64), dtype=np.float32)
    config = TrainConfig(batch_size=np.int64(8), epochs=np.int64(1), learning_rate=np.float32(1e-3),
                         seed=np.int64(1))
    history = fit(model, x, x[:8], config, out_dir=tmp_path, progress=False, data_workers=np.int64(0))
    assert len(history["train_loss"]) == 1
    saved = read_checkpoint(tmp_path / "last.safetensors")
    assert saved.train_config == config and saved.spec == spec and type(saved.train_config.batch_size) is int
    result = evaluate(model, x, batch_size=np.int64(8), seed=np.int64(2))
    assert np.isfinite(result["loss"])
