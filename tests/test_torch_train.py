"""The torch training loop: convergence, exact history, resume, non-finite losses, clipping, plateau,
early stopping, argument checks. Small data and models keep it CI-sized."""
import copy
import math

import numpy as np
import pytest
import torch

from backends.torch import build_model, evaluate, fit, weights
from vae_core.train.schedule import eval_noise
from vae_core import TrainConfig, VAESpec, read_checkpoint, write_checkpoint
from vae_core.model import losses as ref
from vae_core.data import load_dataset
from vae_core.train.history import HISTORY_KEYS, NonFiniteLossError
from vae_core.train.schedule import epoch_noise, epoch_permutation

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4)  # for scikit-learn's 8x8 digits


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _weights_equal(a, b):
    wa, wb = weights.export_weights(a), weights.export_weights(b)
    return all(np.array_equal(wa[k], wb[k]) for k in wa)


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


def test_val_metrics_are_evaluate_with_the_config_seed(digits):
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2, seed=5)
    model = build_model(SPEC, seed=0)
    history = fit(model, digits.x_train, digits.x_test, config, progress=False)
    assert all(len(history[k]) == 2 for k in HISTORY_KEYS)
    final = evaluate(model, digits.x_test, seed=5)
    assert [history[k][-1] for k in ("val_loss", "val_recon", "val_kl")] == [final["loss"], final["recon"], final["kl"]]
    assert history["val_loss"][-1] == pytest.approx(history["val_recon"][-1] + history["val_kl"][-1], rel=1e-12)


def test_evaluate_is_exact_repeatable_and_independent_of_batch_size(digits):
    model = build_model(SPEC.replace(likelihood="gaussian_learned", beta=2.0), seed=1)
    x = digits.x_test[:103]
    a = evaluate(model, x, seed=4)
    assert evaluate(model, x, seed=4) == a
    b = evaluate(model, x, seed=4, batch_size=10)
    assert b == pytest.approx(a, rel=1e-6)
    assert evaluate(model, x, seed=5)["loss"] != a["loss"]
    eps = eval_noise(4, len(x), SPEC.latent_dim)
    with torch.no_grad():
        out, mu, log_var = (t.numpy() for t in model(torch.from_numpy(x), torch.from_numpy(eps)))
    want = ref.negative_elbo(x, out, mu, log_var, likelihood="gaussian_learned", beta=2.0)
    assert a["loss"] == pytest.approx(want.total, rel=1e-6) and a["kl"] == pytest.approx(want.kl, rel=1e-6)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        evaluate(model, x, batch_size=0)


def test_same_seed_same_run_and_shared_noise_changes_the_noise(digits):
    config = TrainConfig(epochs=1, batch_size=128, seed=2)
    runs = []
    for shared in (False, False, True, True):
        model = build_model(SPEC, seed=0)
        runs.append((fit(model, digits.x_train, None, config, shared_noise=shared, progress=False), model))
    assert runs[0][0]["train_loss"] == runs[1][0]["train_loss"] and _weights_equal(runs[0][1], runs[1][1])
    assert runs[2][0]["train_loss"] == runs[3][0]["train_loss"] and _weights_equal(runs[2][1], runs[3][1])
    assert runs[0][0]["train_loss"] != runs[2][0]["train_loss"]


# ---------------------------------------------------------------- checkpoints and resume

# lr 0.1 with plateau patience 0, seed 3: on these digits the val loss fails to improve at epochs 4 and 5
# (27.309 at epoch 3, then 27.316, 27.322), so the LR halves for epochs 5 and 6. A run resumed after epoch 3
# must restore the best loss (and counters) to match; the foreign-state test resumes after epoch 4, when
# the LR has already dropped.
RESUME = TrainConfig(epochs=6, batch_size=64, learning_rate=0.1, seed=3, reduce_lr_on_plateau=True,
                     lr_plateau_patience=0, early_stopping=True, early_stopping_patience=5)


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    model = build_model(SPEC, seed=0)
    history = fit(model, digits.x_train, digits.x_test, RESUME, out_dir=out, progress=False)
    return model, history, out


def _same_history(a, b):
    return {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_resume_equals_uninterrupted_bit_for_bit(digits, uninterrupted, tmp_path):
    full_model, full_history, full_out = uninterrupted
    assert full_history["lr"][0] > full_history["lr"][-1]  # the plateau rule fired: the state matters
    first = build_model(SPEC, seed=0)
    fit(first, digits.x_train, digits.x_test, RESUME.replace(epochs=3), out_dir=tmp_path, progress=False)
    resumed = build_model(SPEC, seed=99)  # different initial weights: all of them must come from the checkpoint
    history = fit(resumed, digits.x_train, digits.x_test, RESUME, out_dir=tmp_path,
                  resume_from=tmp_path / "last.safetensors", progress=False)
    assert _same_history(history, full_history) and len(history["seconds"]) == 6
    assert _weights_equal(resumed, full_model)
    a, b = read_checkpoint(tmp_path / "last.safetensors"), read_checkpoint(full_out / "last.safetensors")
    assert a.epoch == b.epoch == 6 and a.adam.step == b.adam.step and a.trainer_state == b.trainer_state
    assert all(np.array_equal(a.adam.v[k], b.adam.v[k]) for k in a.adam.v)


def test_resume_from_a_foreign_trainer_state_replays_the_history(digits, uninterrupted, tmp_path):
    full_model, full_history, _ = uninterrupted
    fit(build_model(SPEC, seed=0), digits.x_train, digits.x_test, RESUME.replace(epochs=4), out_dir=tmp_path,
        progress=False)
    ckpt = read_checkpoint(tmp_path / "last.safetensors")
    assert ckpt.trainer_state["lr"] < RESUME.learning_rate  # the LR had already dropped
    ckpt.trainer_state, ckpt.backend = {"note": "written by another loop"}, "tf"
    write_checkpoint(tmp_path / "foreign.safetensors", ckpt)
    resumed = build_model(SPEC, seed=0)
    with pytest.warns(UserWarning, match="replaying the plateau and early-stopping rules"):
        history = fit(resumed, digits.x_train, digits.x_test, RESUME, resume_from=tmp_path / "foreign.safetensors",
                      progress=False)
    assert _same_history(history, full_history) and _weights_equal(resumed, full_model)


def test_checkpoints_are_written_every_epoch_and_on_improvement(uninterrupted):
    _, history, out = uninterrupted
    last, best = read_checkpoint(out / "last.safetensors"), read_checkpoint(out / "best.safetensors")
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    assert last.epoch == 6 and best.epoch == best_epoch and last.backend == "torch"
    assert best.trainer_state["best_loss"] == min(history["val_loss"])
    # The keys the TF backend reads and writes too, so either backend resumes the other's checkpoints.
    assert set(last.trainer_state) == {"lr", "monitor", "best_loss", "best_epoch", "plateau_bad_epochs",
                                       "early_stopping_bad_epochs", "stopped_early"}
    val = history["val_loss"]
    improved_last = val[-1] < min(val[:-1])  # patience 0: a last epoch without improvement halves the LR
    assert last.trainer_state["lr"] == history["lr"][-1] * (1.0 if improved_last else 0.5)
    assert last.train_config == RESUME and last.history == history


def test_resume_rejects_a_checkpoint_of_another_spec(digits, uninterrupted):
    _, _, out = uninterrupted
    with pytest.raises(ValueError, match="holds a model of spec"):
        fit(build_model(SPEC.replace(latent_dim=5), seed=0), digits.x_train, None, RESUME,
            resume_from=out / "last.safetensors", progress=False)


# ---------------------------------------------------------------- non-finite losses


def test_non_finite_loss_raises_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    # One step per epoch and lr 1e6: epoch 1's loss (at the initial weights) is finite and its checkpoint is
    # written; the weights then hold values ~1e6 and epoch 2's Gaussian loss overflows.
    spec = SPEC.replace(likelihood="gaussian")
    x = digits.x_train
    model = build_model(spec, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 2, step 1 \(1-based\)") as err:
        fit(model, x, None, TrainConfig(epochs=5, batch_size=len(x), learning_rate=1e6), out_dir=tmp_path,
            progress=False)
    assert (err.value.epoch, err.value.step) == (2, 1)
    assert err.value.checkpoint == str(tmp_path / "last.safetensors")
    ckpt = read_checkpoint(tmp_path / "last.safetensors")  # validates: every weight finite
    assert ckpt.epoch == 1 and all(np.isfinite(w).all() for w in ckpt.weights.values())
    assert not (tmp_path / "best.safetensors").exists() or read_checkpoint(tmp_path / "best.safetensors").epoch == 1


def test_non_finite_without_out_dir_names_no_checkpoint(digits):
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written") as err:
        fit(build_model(SPEC.replace(likelihood="gaussian"), seed=0), digits.x_train, None,
            TrainConfig(epochs=3, batch_size=256, learning_rate=1e6), progress=False)
    assert err.value.checkpoint is None and err.value.epoch == 1 and err.value.step > 1


# ---------------------------------------------------------------- clipping, plateau, early stopping


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


def test_fit_early_stopping_stops_and_restores_the_best_weights(digits, tmp_path):
    # 40 training images overfit quickly; val (360 images) stops improving, patience 2 ends the run.
    spec = VAESpec(input_dim=64, hidden_dims=(64,), latent_dim=8)
    config = TrainConfig(epochs=60, batch_size=8, learning_rate=1e-2, early_stopping=True, early_stopping_patience=2)
    model = build_model(spec, seed=0)
    history = fit(model, digits.x_train[:40], digits.x_test, config, out_dir=tmp_path, progress=False)
    n = len(history["val_loss"])
    best = int(np.argmin(history["val_loss"]))
    assert n < 60 and n == best + 1 + 2  # stopped exactly `patience` epochs after the best one
    assert evaluate(model, digits.x_test, seed=config.seed)["loss"] == min(history["val_loss"])
    best_ckpt = read_checkpoint(tmp_path / "best.safetensors")
    assert best_ckpt.epoch == best + 1
    assert all(np.array_equal(best_ckpt.weights[k], w) for k, w in weights.export_weights(model).items())
    last_ckpt = read_checkpoint(tmp_path / "last.safetensors")  # the last epoch's weights, kept for resuming
    assert last_ckpt.epoch == n and not np.array_equal(last_ckpt.weights["decoder.out.bias"],
                                                       best_ckpt.weights["decoder.out.bias"])
    assert read_checkpoint(tmp_path / "last.safetensors").trainer_state["stopped_early"] is True


# ---------------------------------------------------------------- arguments and precision


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "gpu"}, r"device must be one of 'auto', 'cpu', 'cuda' \(or 'cuda:N'\); got 'gpu'"),
    ({"device": None}, r"device must be one of .*; got None"),
    ({"precision": "fp16"}, r"precision must be one of 'fp32', 'bf16', 'fp64'; got 'fp16'"),
    ({"precision": "float32"}, r"precision must be one of 'fp32', 'bf16', 'fp64'; got 'float32'"),
])
def test_bad_device_or_precision_is_a_value_error(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(build_model(SPEC, seed=0), digits.x_train, None, TrainConfig(epochs=1), progress=False, **kwargs)


def test_evaluate_rejects_a_bad_device(digits):
    with pytest.raises(ValueError, match="device must be one of"):
        evaluate(build_model(SPEC, seed=0), digits.x_test, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_says_so(digits):
    with pytest.raises(ValueError, match="device must name an available device: device='cuda', but CUDA is not"):
        fit(build_model(SPEC, seed=0), digits.x_train, None, TrainConfig(epochs=1), device="cuda", progress=False)


def test_data_is_checked_at_the_boundary(digits):
    bad = digits.x_train.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="train holds NaN or inf values in 1 example"):
        fit(build_model(SPEC, seed=0), bad, None, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"val must have shape \(N, 64\)"):
        fit(build_model(SPEC, seed=0), digits.x_train, digits.x_test[:, :10], TrainConfig(epochs=1), progress=False)
    with pytest.raises(TypeError, match="config must be a vae_core.TrainConfig"):
        fit(build_model(SPEC, seed=0), digits.x_train, None, {"epochs": 1}, progress=False)


def test_uint8_images_are_accepted_and_scaled(digits):
    x8 = np.round(digits.x_test * 255).astype(np.uint8)
    model = build_model(SPEC, seed=0)
    assert evaluate(model, x8) == pytest.approx(evaluate(model, x8.astype(np.float32) / 255), rel=1e-6)


def test_bf16_trains_close_to_fp32_and_keeps_float32_weights(digits):
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2)
    results = {}
    for precision in ("fp32", "bf16"):
        model = build_model(SPEC, seed=0)
        history = fit(model, digits.x_train, digits.x_test, config, precision=precision, progress=False)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        results[precision] = history["val_loss"][-1]
    # bf16 matmuls carry ~3 significant digits; 2 epochs on digits land within about 1% of fp32.
    assert results["bf16"] == pytest.approx(results["fp32"], rel=0.02)
    assert results["bf16"] != results["fp32"]  # autocast really ran in bf16


def test_fp64_trains_in_float64_and_hands_back_float32_weights(digits, tmp_path):
    x, config = digits.x_train[:256], TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2)
    runs = {}
    for precision in ("fp32", "fp64"):
        model = build_model(SPEC, seed=0)
        runs[precision] = fit(model, x, digits.x_test[:64], config, precision=precision, shared_noise=True,
                              progress=False)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs[precision + "-weights"] = weights.export_weights(model)
    assert runs["fp64"]["val_loss"] == pytest.approx(runs["fp32"]["val_loss"], rel=1e-4)
    assert runs["fp64"]["val_loss"] != runs["fp32"]["val_loss"]  # it ran in another precision
    start = weights.export_weights(build_model(SPEC, seed=0))
    assert np.abs(runs["fp64-weights"]["decoder.out.bias"] - start["decoder.out.bias"]).max() > 1e-3  # trained
    with pytest.raises(ValueError, match="precision='fp64' takes no out_dir or resume_from"):
        fit(build_model(SPEC, seed=0), x, None, config, precision="fp64", out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_fp64_divergence_raises_non_finite_loss_and_restores_the_dtype(digits):
    model = build_model(SPEC, seed=0)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch"):
        fit(model, digits.x_train[:256], None, TrainConfig(epochs=2, batch_size=64, learning_rate=1e30),
            precision="fp64", progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())


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
