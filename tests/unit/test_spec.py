"""VAESpec and TrainConfig: defaults, validation messages, JSON round trips."""
import dataclasses
import json

import pytest
from hypothesis import given, strategies as st

from vae_core import TrainConfig, VAESpec


def test_spec_defaults_are_the_seeds():
    spec = VAESpec()
    assert (spec.input_dim, spec.hidden_dims, spec.latent_dim) == (784, (400, 400), 20)
    assert (spec.likelihood, spec.beta, spec.image_shape) == ("bernoulli", 1.0, (28, 28))
    # 784-400-400-20 encoder with two heads, mirrored decoder: the seed's parameter count.
    assert spec.num_params == 784 * 400 + 400 + 400 * 400 + 400 + 2 * (400 * 20 + 20) \
        + 20 * 400 + 400 + 400 * 400 + 400 + 400 * 784 + 784


@pytest.mark.parametrize("field, value, expected", [
    ("input_dim", 0, "an int >= 1"),
    ("input_dim", 784.0, "an int >= 1"),
    ("input_dim", True, "an int >= 1"),
    ("hidden_dims", "400", "a sequence of positive ints"),
    ("hidden_dims", (400, 0), "positive ints"),
    ("hidden_dims", (400, 2.5), "positive ints"),
    ("latent_dim", -2, "an int >= 1"),
    ("likelihood", "poisson", "one of 'bernoulli', 'gaussian', 'gaussian_learned'"),
    ("beta", -0.1, r"a number in \[0.0, 1000000.0\]"),
    ("beta", float("nan"), "a finite number"),
    ("image_shape", (28,), r"None, \(H, W\) or \(H, W, C\) of positive ints"),
    ("image_shape", (28, 28, 0), r"None, \(H, W\) or \(H, W, C\) of positive ints"),
    ("architecture", "resnet", "one of 'mlp', 'conv'"),
    ("conv_channels", (32, 0), "a sequence of positive ints"),
    ("conv_channels", "32", "a sequence of positive ints"),
    ("kernel_size", 1, "an int >= 2"),
])
def test_spec_rejects_bad_fields_naming_field_value_and_allowed(field, value, expected):
    with pytest.raises(ValueError, match=rf"VAESpec\.{field} must be {expected}") as err:
        VAESpec(**{field: value})
    assert f"got {value!r}" in str(err.value)


def test_spec_is_frozen_and_normalises_sequences():
    spec = VAESpec(hidden_dims=[64, 32], image_shape=[28, 28])
    assert spec.hidden_dims == (64, 32) and spec.image_shape == (28, 28)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.latent_dim = 3
    assert hash(spec) == hash(VAESpec(hidden_dims=(64, 32)))


def test_spec_image_shape_inferred_only_for_squares():
    assert VAESpec(input_dim=64).image_shape == (8, 8)
    assert VAESpec(input_dim=10).image_shape is None
    assert VAESpec(input_dim=12, image_shape=(3, 4)).image_shape == (3, 4)


def test_replace_infers_the_image_shape_of_a_new_input_dim():
    assert VAESpec().replace(input_dim=64).image_shape == (8, 8)
    assert VAESpec().replace(input_dim=16, image_shape=(2, 8)).image_shape == (2, 8)
    assert VAESpec(input_dim=12, image_shape=(3, 4)).replace(latent_dim=2).image_shape == (3, 4)


def test_gaussian_learned_doubles_the_decoder_output():
    spec = VAESpec(likelihood="gaussian_learned", hidden_dims=(32,))
    assert spec.output_dim == 2 * 784
    assert spec.weight_shapes()["decoder.out.kernel"] == (32, 1568)
    assert list(VAESpec(hidden_dims=()).weight_shapes()) == [
        "encoder.mu.kernel", "encoder.mu.bias", "encoder.log_var.kernel", "encoder.log_var.bias",
        "decoder.out.kernel", "decoder.out.bias"]


specs = st.builds(
    VAESpec,
    input_dim=st.integers(1, 2000),
    hidden_dims=st.lists(st.integers(1, 1000), max_size=4).map(tuple),
    latent_dim=st.integers(1, 64),
    likelihood=st.sampled_from(["bernoulli", "gaussian", "gaussian_learned"]),
    beta=st.floats(0, 100, allow_nan=False),
)


@given(specs)
def test_spec_json_round_trip(spec):
    assert VAESpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['hidden_dim'\]"):
        VAESpec.from_dict({"hidden_dim": 400})
    with pytest.raises(TypeError, match="expects a mapping"):
        TrainConfig.from_dict([("epochs", 3)])


def test_config_defaults_are_the_seeds():
    c = TrainConfig()
    assert (c.batch_size, c.epochs, c.learning_rate) == (128, 20, 1e-3)
    assert (c.adam_beta1, c.adam_beta2, c.adam_eps) == (0.9, 0.999, 1e-8)
    assert (c.lr_plateau_factor, c.lr_plateau_patience, c.early_stopping_patience) == (0.5, 5, 10)
    assert c.grad_clip_norm is None and not c.reduce_lr_on_plateau and not c.early_stopping


@pytest.mark.parametrize("field, value, expected", [
    ("batch_size", 0, "an int >= 1"),
    ("batch_size", 12.0, "an int >= 1"),
    ("epochs", 0, "an int >= 1"),
    ("learning_rate", 0.0, r"a number in \(0.0, inf\)"),
    ("learning_rate", float("inf"), "a finite number"),
    ("adam_beta1", 1.0, r"a number in \[0.0, 1.0\)"),
    ("adam_beta2", -0.5, r"a number in \[0.0, 1.0\)"),
    ("adam_eps", 0.0, r"a number in \(0.0, inf\)"),
    ("seed", -1, "an int >= 0"),
    ("grad_clip_norm", 0.0, r"a number in \(0.0, inf\)"),
    ("reduce_lr_on_plateau", 1, "True or False"),
    ("lr_plateau_factor", 1.0, r"a number in \(0.0, 1.0\)"),
    ("lr_plateau_patience", -1, "an int >= 0"),
    ("early_stopping", "yes", "True or False"),
    ("early_stopping_patience", 0, "an int >= 1"),
    ("checkpoint_every_steps", 0, "an int >= 1"),
    ("checkpoint_every_steps", 2.5, "an int >= 1"),
])
def test_config_rejects_bad_fields(field, value, expected):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be {expected}; got"):
        TrainConfig(**{field: value})


def test_config_json_round_trip_and_replace():
    c = TrainConfig(epochs=3, grad_clip_norm=1.0, early_stopping=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.replace(epochs=5).epochs == 5
    with pytest.raises(ValueError, match="TrainConfig.epochs"):
        c.replace(epochs=0)


def test_conv_spec_takes_its_input_dim_from_the_image_shape():
    spec = VAESpec(architecture="conv", image_shape=(27, 29, 3))
    assert spec.input_dim == 27 * 29 * 3 and spec.channels == 3
    assert VAESpec.from_dict(spec.to_dict()) == spec
    assert spec.replace(image_shape=(8, 8)).input_dim == 64
    assert VAESpec(input_dim=12, image_shape=(3, 4)).replace(image_shape=None).input_dim == 12  # D kept
    with pytest.raises(ValueError, match=r"VAESpec\.image_shape must be a shape whose product H\*W\*C equals "
                                         r"input_dim \(784\); got \(27, 28\)"):
        VAESpec(input_dim=784, image_shape=(27, 28))
    with pytest.raises(ValueError, match=r"VAESpec\.image_shape must be \(H, W\) or \(H, W, C\) for "
                                         r"architecture='conv'; got None"):
        VAESpec(architecture="conv")


def test_an_mlp_spec_writes_only_the_fields_it_uses():
    """The conv fields stay out of an MLP's dict, so its checkpoints read in releases without conv models."""
    d = VAESpec().to_dict()
    assert not {"architecture", "conv_channels", "kernel_size"} & set(d)
    assert VAESpec.from_dict(d) == VAESpec()
    assert VAESpec(architecture="conv", image_shape=(8, 8)).to_dict()["conv_channels"] == [32, 64]
