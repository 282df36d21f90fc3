"""The torch training loop: convergence, exact history, clipping, the plateau rule, a float64 model, CUDA. Small data
and models keep it CI-sized. What every backend does (checkpoints, resume, early stopping, non-finite losses,
argument checks, bf16 and fp64) is in tests/conformance/."""
import copy
import math

import numpy as np
import pytest
import torch

from backends.torch import build_model, evaluate, fit
from vae_core import TrainConfig, VAESpec, read_checkpoint
from vae_core.model import losses as ref
from vae_core.data import load_dataset
from vae_core.train.history import HISTORY_KEYS
from vae_core.train.schedule import epoch_noise, epoch_permutation

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4)  # for scikit-learn's 8x8 digits


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.slow
def test_three_epochs_on_mnist_5k_reach_the_measured_test_loss():
    # Measured on this machine (seed's 784-400-400-20 model, Adam 1e-3, batch 128, 3 epochs, seeds 0-4):
    # test loss 198.7-199.6 nats. A model that ignores z (the mean training image as Bernoulli
    # probabilities) scores 208.5 and the untrained model ~543, so 203 leaves 3.4 nats of margin over the
    # worst seed while still failing any run that does not use its latent code.
    data = load_dataset("mnist-5k")
    model = build_model(VAESpec(), seed=0)
    history = fit(model, data.x_train, None, TrainConfig(epochs=3, seed=0), progress=False)
    assert history["train_loss"][0] > history["train_loss"][-1]
    test = evaluate(model, data.x_test)
    assert test["loss"] < 203.0, test
    assert test["kl"] > 0.5  # the latent code is in use
    assert test["loss"] == pytest.approx(test["recon"] + test["kl"], rel=1e-9)


def test_history_has_the_keys_and_exact_means_over_examples(digits):
    # lr so small (1e-12) that the weights move by < 1e-10 relative during the epoch: its train loss can then
    # be recomputed from the initial model. 100 examples in batches of 32 (32, 32, 32, 4): the mean of batch
    # means would differ from the mean over examples.
    x = digits.x_train[:100]
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-12, seed=3)
    model = build_model(SPEC, seed=0)
    initial = build_model(SPEC, seed=0)
    history = fit(model, x, None, config, shared_noise=True, progress=False)
    assert tuple(history) == HISTORY_KEYS
    model = initial
    assert history["val_loss"] == history["val_recon"] == history["val_kl"] == []
    assert history["lr"] == [1e-12] and len(history["seconds"]) == 1 and history["seconds"][0] > 0

    order = epoch_permutation(3, 0, 100)
    xs, eps = x[order], epoch_noise(3, 0, 100, SPEC.latent_dim)
    with torch.no_grad():
        out, mu, log_var = (t.numpy() for t in model(torch.from_numpy(xs), torch.from_numpy(eps)))
    recon, kl = ref.bernoulli_nll(xs, out), ref.kl_to_standard_normal(mu, log_var)
    assert history["train_loss"][0] == pytest.approx(np.mean(recon + kl), rel=1e-6)
    assert history["train_recon"][0] == pytest.approx(np.mean(recon), rel=1e-6)
    assert history["train_kl"][0] == pytest.approx(np.mean(kl), rel=1e-6)
    batch_means = np.mean([np.mean((recon + kl)[i:i + 32]) for i in range(0, 100, 32)])
    assert abs(batch_means - np.mean(recon + kl)) > 1e-4 * abs(np.mean(recon + kl))  # the test can tell


# ---------------------------------------------------------------- clipping and the plateau rule


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_clipping_bounds_the_global_norm(digits, clip):
    # One Adam step with eps (1e6) >> |g| and lr = eps moves each weight by ~ -g: the step is the gradient.
    x = digits.x_train[:256]
    model = build_model(SPEC, seed=0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = TrainConfig(epochs=1, batch_size=256, learning_rate=1e6, adam_eps=1e6, grad_clip_norm=clip)
    fit(model, x, None, config, progress=False)
    step_norm = float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())
    if clip is None:
        assert step_norm > 10 * 0.5  # the unclipped gradient is much longer than the clip norm
    else:
        assert step_norm == pytest.approx(clip, rel=1e-3)


def test_fit_plateau_follows_the_rule_on_the_recorded_val_losses(digits):
    config = TrainConfig(epochs=6, batch_size=64, learning_rate=0.1, seed=0, reduce_lr_on_plateau=True,
                         lr_plateau_patience=0, lr_plateau_factor=0.25)
    history = fit(build_model(SPEC, seed=0), digits.x_train, digits.x_test, config, progress=False)
    lr, best, expected = 0.1, math.inf, []
    for loss in history["val_loss"]:  # patience 0: every non-improving epoch multiplies the LR by 0.25
        expected.append(lr)
        if loss < best:
            best = loss
        else:
            lr *= 0.25
    assert history["lr"] == expected and len(set(expected)) > 1


# ---------------------------------------------------------------- a float64 model


def test_a_float64_model_trains_only_in_fp64_and_stays_float64(digits):
    model, x = build_model(SPEC, seed=0).double(), digits.x_train[:256]
    for precision in ("fp32", "bf16"):
        with pytest.raises(ValueError, match=f"parameters are torch.float64, but precision='{precision}'"):
            fit(model, x, None, TrainConfig(epochs=1), precision=precision, progress=False)
    before = model.out.bias.detach().clone()
    fit(model, x, None, TrainConfig(epochs=1, batch_size=64), precision="fp64", progress=False)
    assert model.out.bias.dtype == torch.float64 and (model.out.bias - before).abs().max() > 1e-4
    loss64 = evaluate(model, x)["loss"]  # evaluate runs a float64 model in float64
    loss32 = evaluate(copy.deepcopy(model).float(), x)["loss"]
    assert loss64 == pytest.approx(loss32, rel=1e-5) and loss64 != loss32


# ---------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
def test_cuda_forward_and_loss_match_cpu(likelihood):
    from backends.torch.losses import negative_elbo

    spec = SPEC.replace(likelihood=likelihood)
    cpu_model, gpu_model = build_model(spec, seed=0), build_model(spec, seed=0).cuda()
    x, eps = torch.rand(16, 64), torch.randn(16, 4)
    for m, dev in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        out, mu, log_var = m(x.to(dev), eps.to(dev))
        loss = negative_elbo(x.to(dev), out, mu, log_var, likelihood=likelihood)
        if dev == "cpu":
            want = [float(v) for v in loss]
        else:
            assert out.device.type == "cuda"
            assert [float(v) for v in loss] == pytest.approx(want, rel=1e-5)
    assert gpu_model.sample(3, seed=0).device.type == "cuda"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision, compile", [("fp32", False), ("bf16", False), ("fp32", True)])
def test_cuda_fit_trains_and_matches_evaluate(digits, tmp_path, precision, compile):
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2)
    model = build_model(SPEC, seed=0)
    history = fit(model, digits.x_train, digits.x_test, config, device="cuda", precision=precision, compile=compile,
                  out_dir=tmp_path, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert history["val_loss"][-1] < history["val_loss"][0] or history["train_loss"][-1] < history["train_loss"][0]
    assert evaluate(model, digits.x_test, device="cuda")["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-6)
    assert read_checkpoint(tmp_path / "last.safetensors").epoch == 2
    assert not torch.backends.cuda.matmul.allow_tf32  # fp32 stays exact
