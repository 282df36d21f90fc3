"""The parity checks for convolutional VAEs: forward pass, loss terms, gradients, checkpoints across backends and
float64 lockstep training, against each other and against a NumPy reference written from the spec's geometry."""
import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, read_checkpoint
from vae_core.model import losses
from vae_core.model.init import init_weights
from vae_core.registry import backend_module

from tests.parity.drivers import (CONV_SPECS, batch, build_shared, checkpoint_round_trip, forward, gradient_rel_diffs,
                                  gradients, reference_forward, relative_gaps)
from tests.parity.tolerances import FORWARD_ATOL, GRAD_RTOL, LOCKSTEP_FP64_RTOL, LOSS_RTOL

CASES = list(CONV_SPECS)


@pytest.mark.parametrize("case", CASES)
def test_conv_forward_and_loss_agree_with_the_numpy_reference(backend, case):
    """Each backend's forward pass equals the float64 NumPy reference (explicit padding, "valid" stride-2 convs,
    cropped transposed convs) within FORWARD_ATOL, and so does the negative ELBO of its outputs."""
    spec = VAESpec(**CONV_SPECS[case])
    x, eps = batch(spec, n=16, seed=0)
    ref = dict(zip(("decoder_out", "mu", "log_var"), reference_forward(spec, init_weights(spec, 0), x, eps)))
    expected = losses.negative_elbo(x, ref["decoder_out"], ref["mu"], ref["log_var"], likelihood=spec.likelihood,
                                    beta=spec.beta)
    out = forward(backend, build_shared(backend, spec), x, eps)
    assert out["decoder_out"].shape == (16, spec.output_dim)
    for key in ref:
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=FORWARD_ATOL, err_msg=key)
    got = losses.negative_elbo(x, out["decoder_out"].astype(np.float64), out["mu"], out["log_var"],
                               likelihood=spec.likelihood, beta=spec.beta)
    for term, value in zip(("total", "recon", "kl"), got):
        assert abs(value - getattr(expected, term)) <= LOSS_RTOL * abs(getattr(expected, term)) + 1e-9, term


def test_the_reference_tells_a_one_pixel_padding_shift():
    """A conv whose padding is moved by one pixel ((1, 2) -> (2, 1): the extra row at the start instead of the end,
    the kind of shift that "same" in one framework against explicit padding in the other produces) gives outputs
    far outside FORWARD_ATOL: the checks above would catch a backend that did that."""
    from vae_core.model.forward import conv2d

    spec = VAESpec(**CONV_SPECS["27x29x3"])
    level = spec.layers()[0].level
    assert level.pad[0] == (1, 2)
    x = np.random.default_rng(0).random((2, 27, 29, 3))
    kernel = init_weights(spec, 0)["encoder.conv.0.kernel"].astype(np.float64)
    right = conv2d(x, kernel, level.pad)
    shifted = conv2d(x, kernel, ((2, 1), level.pad[1]))
    assert right.shape == shifted.shape and np.abs(right - shifted).max() > 100 * FORWARD_ATOL


@pytest.mark.parametrize("case", CASES)
def test_conv_gradients_agree_for_every_weight(other, case):
    spec = VAESpec(**CONV_SPECS[case])
    x, eps = batch(spec, n=16, seed=1)
    g = {name: gradients(name, build_shared(name, spec), x, eps) for name in ("torch", other)}
    assert list(g["torch"]) == list(g[other]) == list(spec.weight_shapes())
    for name, shape in spec.weight_shapes().items():
        assert g["torch"][name].shape == g[other][name].shape == shape, name
    for name, rel in gradient_rel_diffs(g["torch"], g[other]).items():
        assert rel < GRAD_RTOL, f"{case} {name}: relative gradient difference {rel:.2e} >= {GRAD_RTOL}"


@pytest.mark.parametrize("size", [(2, 2), (2, 3), (5, 7), (8, 8), (13, 2), (31, 17)])
@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
def test_the_decoder_returns_exactly_the_image_size(size, kernel_size):
    """For any image size the conv stack accepts, the transposed convs crop back to exactly H x W (the last
    transposed conv's level is the first conv's), and the reference's shapes agree."""
    n_convs = max(1, min(3, int(np.log2(min(size)))))
    spec = VAESpec(architecture="conv", image_shape=(*size, 2), conv_channels=(3,) * n_convs,
                   kernel_size=kernel_size, hidden_dims=(4,), latent_dim=2)
    levels = [layer.level for layer in spec.layers() if layer.kind == "conv"]
    assert levels[0].in_size == size
    for a, b in zip(levels, levels[1:]):
        assert b.in_size == a.out_size
    for level in levels:
        for n, m, (before, after) in zip(level.in_size, level.out_size, level.pad):
            assert m == -(-n // 2) and 0 <= before <= after <= before + 1
            assert (m - 1) * 2 + kernel_size - before - after == n  # the transposed conv's cropped output
    x, eps = batch(spec, n=2)
    out, _, _ = reference_forward(spec, init_weights(spec, 0), x, eps)
    assert out.shape == (2, size[0] * size[1] * 2)


@pytest.mark.parametrize("size, kernel_size", [((5, 7), 3), ((13, 2), 4), ((9, 9), 5)])
def test_every_backend_decodes_exactly_the_image_size(backend, size, kernel_size):
    """The models themselves (not only the plan) return H x W x C, for odd sizes and kernels, as the reference."""
    spec = VAESpec(architecture="conv", image_shape=(*size, 3), conv_channels=(2,), kernel_size=kernel_size,
                   hidden_dims=(4,), latent_dim=2)
    x, eps = batch(spec, n=2)
    ref = reference_forward(spec, init_weights(spec, 0), x, eps)[0]
    out = forward(backend, build_shared(backend, spec), x, eps)["decoder_out"]
    assert out.shape == (2, size[0] * size[1] * 3)
    np.testing.assert_allclose(out, ref, rtol=0, atol=FORWARD_ATOL)


def test_conv_checkpoint_moves_between_backends(tmp_path, source, target):
    from vae_core.data import load_dataset

    digits = load_dataset("digits")
    spec = VAESpec(architecture="conv", image_shape=(8, 8), conv_channels=(8, 16), hidden_dims=(32,), latent_dim=4)
    x, val = digits.x_train[:512], digits.x_test[:128]
    _, _, ckpt, a, b = checkpoint_round_trip(source, target, x, val, tmp_path, spec)
    assert read_checkpoint(ckpt).spec == spec
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=FORWARD_ATOL, err_msg=key)


@pytest.mark.slow
def test_conv_lockstep_training_in_float64_agrees(other):
    """30 optimizer steps of fit(precision="fp64", shared_noise=True), one batch of 28 x 28 digits per epoch, with
    gradient clipping on: the per-step losses agree within LOCKSTEP_FP64_RTOL (the parity report runs 50 steps of
    a wider model)."""
    from tests.parity.drivers import lockstep_data, lockstep_losses

    backend_module(other)
    spec = VAESpec(architecture="conv", image_shape=(28, 28), conv_channels=(4, 8), hidden_dims=(32,))
    x = lockstep_data()[:32]
    config = TrainConfig(epochs=30, batch_size=32, seed=0, grad_clip_norm=50.0)
    curves = {name: lockstep_losses(name, spec, x, config, precision="fp64") for name in ("torch", other)}
    assert curves["torch"][0] - curves["torch"][-1] > 0.05 * curves["torch"][0]  # it trained
    gap = relative_gaps(curves["torch"], curves[other])
    assert gap.max() < LOCKSTEP_FP64_RTOL, f"max relative gap {gap.max():.2e} at step {gap.argmax() + 1}"
