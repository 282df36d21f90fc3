"""Training behaviours every backend shares (`fit`, `evaluate`, checkpoints, resume, early stopping, non-finite
losses, argument checks, precisions), one test body each, run for every registered backend (tests/conftest.py).

Small models on scikit-learn's 8x8 digits keep it CI-sized. What only one framework has (torch.compile and CUDA,
Keras' own fit and tf.data pipelines, a float64 model) is in tests/backends/torch/ and tests/backends/tf/.
"""
import math
import re

import numpy as np
import pytest

from tests.conftest import BACKEND_NAMES
from vae_core import TrainConfig, VAESpec, build, evaluate, fit, load_checkpoint, read_checkpoint, write_checkpoint
from vae_core.model import losses as ref
from vae_core.registry import backend_module
from vae_core.train.history import HISTORY_KEYS, NonFiniteLossError
from vae_core.train.schedule import eval_noise

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4)  # for scikit-learn's 8x8 digits
# How close fit's validation numbers are to `evaluate(val, seed=config.seed)` of the same weights: the same exact
# means over the same fixed noise, computed by evaluate's own code (bit for bit: torch) or by the compiled training
# step (TF: XLA rounds differently, measured within 3e-8 relative).
VALIDATION_RTOL = {"torch": 0.0}
VALIDATION_RTOL_OTHERWISE = 1e-6


@pytest.fixture(scope="module")
def digits():
    from vae_core.data import load_dataset

    return load_dataset("digits")


def _weights(model) -> dict[str, np.ndarray]:
    return backend_module(model.backend_name).weights.export_weights(model)


def _weights_equal(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return sorted(wa) == sorted(wb) and all(np.array_equal(wa[k], wb[k]) for k in wa)


def _dtypes(model) -> set[str]:
    """The float dtypes of the model's own trainable parameters ("float32", ...), as the framework holds them."""
    params = backend_module(model.backend_name).weights.native_parameters(model).values()
    return {re.search(r"b?float\d+", str(p.dtype)).group() for p in params}


def _forward(model, x: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, ...]:
    """(decoder_out, mu, log_var) of the model at fixed noise, as NumPy."""
    with backend_module(model.backend_name).device.inference(model) as native:
        return tuple(np.asarray(t) for t in model(native(x), native(eps)))


def _validation_rtol(backend: str) -> float:
    return VALIDATION_RTOL.get(backend, VALIDATION_RTOL_OTHERWISE)


def _same_history(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


# ---------------------------------------------------------------- one run with checkpoints, and its resumes

# lr 0.1 with plateau patience 0: on these digits the val loss stops improving within a few epochs, so the LR drops
# during the run (torch, seed 3: at epochs 4 and 5), and the resumes below must restore the loop's state to match.
RESUME = TrainConfig(epochs=6, batch_size=64, learning_rate=0.1, seed=3, reduce_lr_on_plateau=True,
                     lr_plateau_patience=0, early_stopping=True, early_stopping_patience=5)


@pytest.fixture(scope="module")
def uninterrupted(backend, digits, tmp_path_factory):
    """RESUME's 6 epochs in one run, with checkpoints: (model, history, out_dir). One run per backend."""
    out = tmp_path_factory.mktemp(f"full-{backend}")
    model = build(backend, SPEC, seed=0)
    history = fit(model, digits.x_train, digits.x_test, RESUME, out_dir=out, progress=False)
    return model, history, out


def test_a_run_has_the_history_and_checkpoints_and_ends_on_the_best_epoch(backend, digits, uninterrupted):
    """The history has every key for every epoch; last.safetensors holds the last epoch (loop state included, with
    the keys every backend reads and writes, so either backend resumes the other's checkpoints), best.safetensors the
    best one; early stopping ends the run on the best weights, whose validation numbers are `evaluate(val,
    seed=config.seed)` exactly."""
    model, history, out = uninterrupted
    assert tuple(history) == HISTORY_KEYS and all(len(v) == RESUME.epochs for v in history.values())
    assert all(s > 0 for s in history["seconds"]) and history["lr"][0] == RESUME.learning_rate
    assert history["train_loss"][-1] < history["train_loss"][0]
    last, best = read_checkpoint(out / "last.safetensors"), read_checkpoint(out / "best.safetensors")
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    steps = math.ceil(len(digits.x_train) / RESUME.batch_size)
    assert (last.epoch, last.backend, last.train_config, last.adam.step) == (6, backend, RESUME, 6 * steps)
    assert best.epoch == best_epoch and last.history == history
    assert best.trainer_state["best_loss"] == min(history["val_loss"])
    assert set(last.trainer_state) == {"lr", "monitor", "best_loss", "best_epoch", "plateau_bad_epochs",
                                       "early_stopping_bad_epochs", "stopped_early"}
    val = history["val_loss"]
    improved_last = val[-1] < min(val[:-1])  # patience 0: a last epoch without improvement halves the LR
    assert last.trainer_state["lr"] == history["lr"][-1] * (1.0 if improved_last else 0.5)
    # validation = evaluate(model, val, seed=config.seed): exact means with the same fixed noise
    final = evaluate(model, digits.x_test, seed=RESUME.seed)
    i = best_epoch - 1
    assert [history[k][i] for k in ("val_loss", "val_recon", "val_kl")] == \
        pytest.approx([final["loss"], final["recon"], final["kl"]], rel=_validation_rtol(backend), abs=0)
    assert history["val_loss"][i] == pytest.approx(history["val_recon"][i] + history["val_kl"][i],
                                                   rel=max(_validation_rtol(backend), 1e-12))
    x = digits.x_test[:8]
    np.testing.assert_array_equal(np.asarray(load_checkpoint(out / "best.safetensors", backend).reconstruct(x)),
                                  np.asarray(model.reconstruct(x)))


def test_a_resumed_run_equals_the_uninterrupted_one_with_its_own_or_a_foreign_loop_state(backend, digits,
                                                                                         uninterrupted, tmp_path):
    """Stopped after the first epoch whose checkpoint holds a lowered LR, then resumed: from the checkpoint as
    written (Adam and the loop state restored), and from a copy whose loop state another trainer wrote (the state is
    then replayed from the history). Both end on the uninterrupted run's history and weights, bit for bit."""
    full_model, full_history, full_out = uninterrupted
    assert full_history["lr"][0] > full_history["lr"][-1]  # the plateau rule fired: the state matters
    stop = next(k for k, lr in enumerate(full_history["lr"]) if lr < RESUME.learning_rate)  # epochs before it
    assert 1 <= stop < RESUME.epochs
    fit(build(backend, SPEC, seed=0), digits.x_train, digits.x_test, RESUME.replace(epochs=stop), out_dir=tmp_path,
        progress=False)
    ckpt = read_checkpoint(tmp_path / "last.safetensors")
    assert ckpt.trainer_state["lr"] < RESUME.learning_rate  # the LR had already dropped
    ckpt.trainer_state, ckpt.backend = {"note": "written by another loop"}, next(b for b in BACKEND_NAMES
                                                                                    if b != backend)
    write_checkpoint(tmp_path / "foreign.safetensors", ckpt)

    replayed = build(backend, SPEC, seed=0)  # beside the stopped run's best.safetensors, as it wrote it
    with pytest.warns(UserWarning, match="replaying the plateau and early-stopping rules"):
        history = fit(replayed, digits.x_train, digits.x_test, RESUME, resume_from=tmp_path / "foreign.safetensors",
                      progress=False)
    assert _same_history(history, full_history) and _weights_equal(replayed, full_model)

    resumed = build(backend, SPEC, seed=99)  # different initial weights: all of them must come from the checkpoint
    history = fit(resumed, digits.x_train, digits.x_test, RESUME, out_dir=tmp_path,
                  resume_from=tmp_path / "last.safetensors", progress=False)
    assert _same_history(history, full_history) and len(history["seconds"]) == RESUME.epochs
    assert _weights_equal(resumed, full_model)
    a, b = read_checkpoint(tmp_path / "last.safetensors"), read_checkpoint(full_out / "last.safetensors")
    assert a.epoch == b.epoch == RESUME.epochs and a.adam.step == b.adam.step and a.trainer_state == b.trainer_state
    for name in a.adam.m:
        np.testing.assert_array_equal(a.adam.m[name], b.adam.m[name], err_msg=name)
        np.testing.assert_array_equal(a.adam.v[name], b.adam.v[name], err_msg=name)


# ---------------------------------------------------------------- evaluate, seeds and noise


def test_evaluate_is_exact_repeatable_and_independent_of_batch_size(backend, digits):
    """evaluate: the exact means over the examples of the reference loss of the model's outputs at the fixed noise
    eval_noise(seed), whatever the batch size; another seed, other noise."""
    spec = SPEC.replace(likelihood="gaussian_learned", beta=2.0)
    model = build(backend, spec, seed=1)
    x = digits.x_test[:103]
    a = evaluate(model, x, seed=4)
    assert evaluate(model, x, seed=4) == a
    assert evaluate(model, x, seed=4, batch_size=10) == pytest.approx(a, rel=1e-6)
    assert evaluate(model, x, seed=5)["loss"] != a["loss"]
    out, mu, log_var = _forward(model, x, eval_noise(4, len(x), spec.latent_dim))
    want = ref.negative_elbo(x, out, mu, log_var, likelihood="gaussian_learned", beta=2.0)
    assert a["loss"] == pytest.approx(want.total, rel=1e-6) and a["kl"] == pytest.approx(want.kl, rel=1e-6)
    assert a["recon"] == pytest.approx(want.recon, rel=1e-6)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        evaluate(model, x, batch_size=0)


def test_shared_noise_repeats_a_run_and_differs_from_the_frameworks_noise(backend, digits):
    """shared_noise=True: the same run twice, bit for bit, on other noise than the framework's own. (That the same
    seed repeats a run on the framework's noise too is test_a_resumed_run_equals_...'s: the stopped run's epochs
    equal the uninterrupted run's.)"""
    x, config = digits.x_train[:512], TrainConfig(epochs=1, batch_size=128, seed=2)
    runs = []
    for shared in (True, True, False):
        model = build(backend, SPEC, seed=0)
        runs.append((fit(model, x, None, config, shared_noise=shared, progress=False), model))
    assert runs[0][0]["train_loss"] == runs[1][0]["train_loss"] and _weights_equal(runs[0][1], runs[1][1])
    assert runs[0][0]["train_loss"] != runs[2][0]["train_loss"]


# ---------------------------------------------------------------- early stopping


def test_early_stopping_stops_and_restores_the_best_weights(backend, tmp_path):
    """Validation on inverted images stops improving while the model keeps fitting the training images; `patience`
    epochs after the best one training stops, and the best epoch's weights come back (last.safetensors keeps the
    last epoch's, for resuming)."""
    x = np.random.default_rng(0).random((256, SPEC.input_dim), dtype=np.float32)  # (256, 64)
    val = 1.0 - x[:64]
    config = TrainConfig(epochs=12, batch_size=32, learning_rate=0.02, early_stopping=True, early_stopping_patience=2)
    model = build(backend, SPEC, seed=0)
    # shared noise: every backend follows the same curve (best at epoch 7, 1e-3 above it at 8 and 9), so where it
    # stops does not depend on a backend's own noise stream
    history = fit(model, x, val, config, out_dir=tmp_path, progress=False, shared_noise=True)
    n, best = len(history["val_loss"]), int(np.argmin(history["val_loss"]))
    assert n < config.epochs and n == best + 1 + 2  # stopped exactly `patience` epochs after the best one
    assert evaluate(model, val, seed=config.seed)["loss"] == pytest.approx(min(history["val_loss"]),
                                                                          rel=_validation_rtol(backend), abs=0)
    best_ckpt = read_checkpoint(tmp_path / "best.safetensors")
    last_ckpt = read_checkpoint(tmp_path / "last.safetensors")
    assert best_ckpt.epoch == best + 1 and last_ckpt.epoch == n and last_ckpt.trainer_state["stopped_early"] is True
    for name, arr in _weights(model).items():
        np.testing.assert_array_equal(arr, best_ckpt.weights[name], err_msg=name)
    assert not np.array_equal(last_ckpt.weights["decoder.out.bias"], best_ckpt.weights["decoder.out.bias"])


# ---------------------------------------------------------------- non-finite losses


def test_a_non_finite_loss_after_a_good_epoch_keeps_the_last_good_checkpoint(backend, digits, tmp_path):
    # One step per epoch and lr 1e6: epoch 1's loss (at the initial weights) is finite and its checkpoint is
    # written; the weights then hold values ~1e6 and epoch 2's Gaussian loss overflows.
    x = digits.x_train
    model = build(backend, SPEC.replace(likelihood="gaussian"), seed=0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 2, step 1 \(1-based\)") as err:
        fit(model, x, None, TrainConfig(epochs=5, batch_size=len(x), learning_rate=1e6), out_dir=tmp_path,
            progress=False)
    assert (err.value.epoch, err.value.step) == (2, 1)
    assert err.value.checkpoint == str(tmp_path / "last.safetensors")
    ckpt = read_checkpoint(tmp_path / "last.safetensors")  # validates: every weight finite
    assert ckpt.epoch == 1 and all(np.isfinite(w).all() for w in ckpt.weights.values())
    assert not (tmp_path / "best.safetensors").exists() or read_checkpoint(tmp_path / "best.safetensors").epoch == 1
    load_checkpoint(tmp_path / "last.safetensors", backend)  # and it loads into the backend


def test_a_non_finite_loss_in_the_first_epoch_names_no_checkpoint(backend, digits, tmp_path):
    # lr 1e6: step 1's loss (at the initial weights) is finite, step 2's Gaussian loss overflows.
    config = TrainConfig(epochs=3, batch_size=256, learning_rate=1e6)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2 \(1-based\); .*no checkpoint was written") as err:
        fit(build(backend, SPEC.replace(likelihood="gaussian"), seed=0), digits.x_train, None, config,
            out_dir=tmp_path, progress=False)
    assert (err.value.epoch, err.value.step, err.value.checkpoint) == (1, 2, None)
    assert not (tmp_path / "last.safetensors").exists()


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "gpu"}, r"device must be one of 'auto', 'cpu', 'cuda' \(or 'cuda:N'\); got 'gpu'"),
    ({"device": "tpu"}, r"device must be one of 'auto', 'cpu', 'cuda' \(or 'cuda:N'\); got 'tpu'"),
    ({"device": None}, r"device must be one of .*; got None"),
    ({"precision": "fp16"}, r"precision must be one of 'fp32', 'bf16', 'fp64'; got 'fp16'"),
    ({"precision": "float32"}, r"precision must be one of 'fp32', 'bf16', 'fp64'; got 'float32'"),
])
def test_a_bad_device_or_precision_is_a_value_error_naming_it(backend, kwargs, match):
    x = np.full((40, SPEC.input_dim), 0.5, np.float32)
    with pytest.raises(ValueError, match=match):
        fit(build(backend, SPEC, seed=0), x, None, TrainConfig(epochs=1), progress=False, **kwargs)
    if "device" in kwargs:
        with pytest.raises(ValueError, match=match):
            evaluate(build(backend, SPEC, seed=0), x, **kwargs)


def test_fit_checks_the_data_the_config_and_the_model_at_the_boundary(backend, digits):
    model, x = build(backend, SPEC, seed=0), digits.x_train[:40]
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="train holds NaN or inf values in 1 example"):
        fit(model, bad, None, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="val holds NaN"):
        fit(model, x, bad[:10], TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"train must have shape \(N, 64\)"):
        fit(model, x[:, :8], None, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"val must have shape \(N, 64\)"):
        fit(model, x, digits.x_test[:, :10], TrainConfig(epochs=1), progress=False)
    with pytest.raises(TypeError, match="config must be a vae_core.TrainConfig"):
        fit(model, x, None, {"epochs": 1}, progress=False)
    with pytest.raises(TypeError, match=rf"model must be a \w+ VAE built by vae_core\.build\('{backend}', \.\.\.\)"):
        backend_module(backend).fit(object(), x, progress=False)


# ---------------------------------------------------------------- precisions


def test_bf16_and_fp64_train_as_fp32_does_and_hand_back_a_float32_model(backend, digits, tmp_path):
    """precision="bf16" (mixed precision) and "fp64" (a float64 copy of the weights, trained and handed back) train
    the same model as fp32 does, as far as their precision goes, and leave it a float32 model computing in float32."""
    x, val = digits.x_train[:256], digits.x_test[:64]
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2)
    start = build(backend, SPEC, seed=0)
    before = evaluate(start, val)["loss"]
    runs, weights = {}, {}
    for precision in ("fp32", "bf16", "fp64"):
        model = build(backend, SPEC, seed=0)
        history = runs[precision] = fit(model, x, None, config, precision=precision, shared_noise=True,
                                        progress=False)
        assert np.isfinite(history["train_loss"]).all() and history["train_loss"][-1] < history["train_loss"][0]
        assert _dtypes(model) == {"float32"}, precision
        assert np.asarray(model.reconstruct(val[:4])).dtype == np.float32, precision  # it computes in float32 again
        weights[precision] = _weights(model)
        if precision == "bf16":  # the model bf16 trained, evaluated in float32
            assert evaluate(model, val)["loss"] < before
    # bf16 matmuls carry ~3 significant digits; 2 epochs on digits land within about 1% of fp32.
    assert runs["bf16"]["train_loss"][-1] == pytest.approx(runs["fp32"]["train_loss"][-1], rel=0.02)
    assert runs["bf16"]["train_loss"][-1] != runs["fp32"]["train_loss"][-1]  # it really ran in bf16
    for key in ("train_loss", "train_recon", "train_kl"):  # the same batches and noise: float32 rounding apart
        assert runs["fp64"][key] == pytest.approx(runs["fp32"][key], rel=1e-4), key
    assert runs["fp64"]["train_loss"] != runs["fp32"]["train_loss"]  # it ran in another precision
    moved = weights["fp64"]["decoder.out.bias"] - _weights(start)["decoder.out.bias"]
    assert np.abs(moved).max() > 1e-3  # the trained float64 weights came back into the model
    with pytest.raises(ValueError, match="precision='fp64' takes no out_dir or resume_from"):
        fit(build(backend, SPEC, seed=0), x, None, config, precision="fp64", out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_fp64_divergence_raises_non_finite_loss_and_hands_back_float32_weights(backend, digits):
    model = build(backend, SPEC, seed=0)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch"):
        fit(model, digits.x_train[:256], None, TrainConfig(epochs=2, batch_size=64, learning_rate=1e30),
            precision="fp64", progress=False)
    assert _dtypes(model) == {"float32"}
    assert not np.isfinite(_weights(model)["decoder.out.kernel"]).all()  # as an fp32 run would leave them
