"""User-facing behaviours that every backend shares, one test body each, run for every registered backend (the
`backend` argument, tests/conftest.py). More of them: tests/conformance/test_conformance_model.py (the model) and
tests/conformance/test_conformance_train.py (fit, evaluate, checkpoints)."""
import numpy as np
import pytest

from tests.stop_signals import StopAfterChecks
from vae_core import VAESpec, build

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=3, image_shape=(8, 8))
CONV_SPEC = VAESpec(architecture="conv", image_shape=(8, 8), conv_channels=(4, 8), hidden_dims=(16,), latent_dim=3)
SPECS = [pytest.param(SPEC, id="mlp"), pytest.param(CONV_SPEC, id="conv")]


def _model(backend: str, spec: VAESpec = SPEC):
    return build(backend, spec, seed=0)


def _decoded(model, z: np.ndarray) -> np.ndarray:
    """The model's own decoder output for z (N, L), as NumPy."""
    from vae_core.registry import backend_module

    with backend_module(model.backend_name).device.inference(model) as native:
        return np.asarray(model.decode(native(z)))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_learned"])
def test_sample_with_a_seed_decodes_numpys_standard_normal(backend, likelihood):
    """sample(n, seed=s) decodes z = np.random.default_rng(s).standard_normal((n, L)): the same z, so the same
    samples up to float32 rounding, in every backend (tests/parity checks that the decoders agree); in data space
    (Bernoulli probabilities, or the Gaussian means, exactly the decoder's first D columns)."""
    model = _model(backend, SPEC.replace(likelihood=likelihood))
    z = np.random.default_rng(7).standard_normal((5, SPEC.latent_dim), dtype=np.float32)  # (5, L)
    got = np.asarray(model.sample(5, seed=7))
    assert got.shape == (5, SPEC.input_dim)
    out = _decoded(model, z)
    if likelihood == "bernoulli":
        np.testing.assert_allclose(got, 1.0 / (1.0 + np.exp(-out.astype(np.float64))), rtol=1e-5, atol=1e-6)
        assert 0.0 <= got.min() and got.max() <= 1.0
    else:
        np.testing.assert_array_equal(got, out[:, :SPEC.input_dim])
    np.testing.assert_array_equal(got, np.asarray(model.sample(5, seed=7)))
    assert not np.array_equal(got, np.asarray(model.sample(5, seed=8)))
    with pytest.raises(ValueError, match=r"sample\W+n\W.*int >= 1; got 0"):
        model.sample(0)


def _sees_a_gpu(backend: str) -> bool:
    from vae_core.registry import backend_module

    try:
        backend_module(backend).device.resolve_device("cuda")
    except ValueError:
        return False
    return True


def test_an_unavailable_device_is_a_value_error_that_names_it(backend):
    from vae_core import evaluate, fit

    model = _model(backend)
    if _sees_a_gpu(backend):
        pytest.skip("this machine has a GPU")
    x = np.random.default_rng(0).random((32, SPEC.input_dim), dtype=np.float32)
    for call in (lambda: fit(model, x, device="cuda", progress=False), lambda: evaluate(model, x, device="cuda:1")):
        with pytest.raises(ValueError, match=r"device must name an available device: device='cuda(:1)?', but "
                                             r"(CUDA is not available to torch|(TensorFlow|JAX) \S+ sees 0 GPU)"):
            call()


def test_cli_an_unavailable_device_exits_2_with_one_line(backend, tmp_path, capsys):
    from vae_core.cli import main

    _model(backend)
    if _sees_a_gpu(backend):
        pytest.skip("this machine has a GPU")
    status = main(["train", "--backend", backend, "--device", "cuda", "--dataset", "digits", "--epochs", "1",
                   "--no-progress", "--no-plots", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "device='cuda'" in err, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_model_class_holds_the_shared_initial_weights(backend):
    """VAE(spec, seed=s), the backend's class itself, starts from vae_core.init_weights(spec, s), as build() does."""
    from vae_core import init_weights
    from vae_core.registry import backend_module

    _model(backend)
    module = backend_module(backend)
    got = module.weights.export_weights(module.VAE(SPEC, seed=3))
    want = init_weights(SPEC, 3)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# ---------------------------------------------------------------- resume (vae_core.train.resume, one policy)

def _x(n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).random((n, SPEC.input_dim), dtype=np.float32)  # (n, D)


def _resume_fit(model, config, checkpoint):
    from vae_core import fit
    return fit(model, _x(), None, config, resume_from=checkpoint, progress=False)


def test_resume_refuses_a_checkpoint_of_another_spec(backend, tmp_path):
    from vae_core import CheckpointError, TrainConfig, save_checkpoint

    save_checkpoint(tmp_path / "last.safetensors", _model(backend), epoch=1)
    other = build(backend, SPEC.replace(latent_dim=4), seed=0)
    with pytest.raises(CheckpointError, match=r"holds a model of spec .* build the model from the checkpoint's spec"):
        _resume_fit(other, TrainConfig(epochs=2, batch_size=32), tmp_path / "last.safetensors")


def test_resume_trims_the_history_to_the_checkpoint_epoch_and_warns_as_user_warnings(backend, tmp_path):
    from vae_core import TrainConfig, save_checkpoint

    config = TrainConfig(epochs=3, batch_size=32)
    history = {"train_loss": [1.0, 2.0, 3.0], "lr": [1e-3] * 3}  # longer than the checkpoint's 1 epoch
    save_checkpoint(tmp_path / "ck.safetensors", _model(backend), train_config=config, epoch=1, history=history)
    with pytest.warns(UserWarning) as caught:  # no Adam state; no trainer_state (replayed from the history)
        out = _resume_fit(_model(backend), config, tmp_path / "ck.safetensors")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("no Adam state" in m for m in messages) and any("replaying" in m for m in messages), messages
    assert not [w for w in caught if w.category is RuntimeWarning]
    assert {w.filename for w in caught} == {__file__}  # they point at the user's call, not into the library
    assert len(out["train_loss"]) == 3 and out["train_loss"][0] == 1.0 and out["train_loss"][1] != 2.0


@pytest.mark.filterwarnings("ignore:resume_from=.* has no Adam state:UserWarning")  # the checkpoint has none
def test_resume_refuses_an_unreadable_best_checkpoint(backend, tmp_path):
    from vae_core import CheckpointError, TrainConfig, save_checkpoint

    config = TrainConfig(epochs=3, batch_size=32, early_stopping=True, early_stopping_patience=5)
    state = {"lr": 1e-3, "monitor": "train_loss", "best_loss": 500.0, "best_epoch": 1, "plateau_bad_epochs": 0,
             "early_stopping_bad_epochs": 1, "stopped_early": False}  # the best epoch is not the checkpoint's
    save_checkpoint(tmp_path / "last.safetensors", _model(backend), train_config=config, epoch=2,
                    history={"train_loss": [500.0, 501.0]}, trainer_state=state)
    (tmp_path / "best.safetensors").write_bytes(b"\x00" * 64)  # a damaged file
    with pytest.raises(CheckpointError, match=r"best.safetensors', the run's best weights \(epoch 1\), cannot be read"):
        _resume_fit(_model(backend), config, tmp_path / "last.safetensors")


def test_early_stopping_says_so_once_on_stderr(backend, tmp_path, capsys):
    import warnings

    from vae_core import TrainConfig, fit, save_checkpoint

    config = TrainConfig(epochs=5, batch_size=32, early_stopping=True, early_stopping_patience=1)
    state = {"lr": 1e-3, "monitor": "train_loss", "best_loss": 0.0, "best_epoch": 1, "plateau_bad_epochs": 0,
             "early_stopping_bad_epochs": 0, "stopped_early": False}  # no loss beats 0: epoch 2 cannot improve
    model = _model(backend)
    save_checkpoint(tmp_path / "ck.safetensors", model, train_config=config, epoch=1, history={"train_loss": [0.0]},
                    trainer_state=state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the checkpoint has no Adam state, on purpose
        history = fit(model, _x(), None, config, resume_from=tmp_path / "ck.safetensors", progress=True)
    out, err = capsys.readouterr()
    assert len(history["train_loss"]) == 2
    line = "early stopping after epoch 2: train_loss has not improved for 1 epochs; restoring the weights of epoch 1"
    assert err.count(line) == 1 and "early stopping" not in out


def test_the_progress_bar_counts_optimizer_steps_on_stderr(backend, capfd):
    from vae_core import TrainConfig, fit

    x = np.random.default_rng(0).random((10, SPEC.input_dim), dtype=np.float32)
    fit(_model(backend), x, None, TrainConfig(epochs=2, batch_size=4), progress=True)  # 3 steps per epoch
    out, err = capfd.readouterr()
    assert f"{backend} fit" in err and "6/6" in err and "step" in err, err
    fit(_model(backend), x, None, TrainConfig(epochs=1, batch_size=4), progress=False)
    assert f"{backend} fit" not in capfd.readouterr().err


@pytest.mark.parametrize("spec", SPECS)
def test_a_stop_mid_epoch_writes_a_step_checkpoint_and_the_resume_is_bit_identical(backend, spec, tmp_path,
                                                                                   monkeypatch):
    import vae_core.train.loop
    from vae_core import TrainConfig, fit, read_checkpoint
    from vae_core.train.interrupt import StopSignals, TrainingInterrupted

    x, val = _x(100), _x(20)[::-1].copy()
    config = TrainConfig(epochs=3, batch_size=8, checkpoint_every_steps=5, reduce_lr_on_plateau=True,
                         lr_plateau_patience=0, early_stopping=True, early_stopping_patience=10)
    # 13 steps an epoch: step checkpoints inside every epoch; early stopping ends on the best epoch's weights, which
    # a resume from a step checkpoint must take from best.safetensors, not from the step checkpoint itself
    counter = StopAfterChecks(10 ** 9)  # never stops: counts the run's checks for a stop (torch: before every
    monkeypatch.setattr(vae_core.train.loop, "StopSignals", lambda: counter)  # step; TF: around every block)
    whole = fit(_model(backend, spec), x, val, config, out_dir=tmp_path / "whole", progress=False)
    monkeypatch.setattr(vae_core.train.loop, "StopSignals", lambda: StopAfterChecks(counter.calls // 2))  # epoch 2
    with pytest.raises(TrainingInterrupted) as stop:
        fit(_model(backend, spec), x, val, config, out_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(vae_core.train.loop, "StopSignals", StopSignals)
    cut = tmp_path / "cut" / "last.safetensors"
    position = read_checkpoint(cut).trainer_state["position"]
    assert (stop.value.exit_status, stop.value.checkpoint) == (143, str(cut))
    assert (position["epoch"], position["step"]) == (stop.value.epoch, stop.value.step) and 0 < position["step"] < 13
    assert stop.value.epoch >= 2  # a best epoch exists before the stop
    resumed = fit(_model(backend, spec), x, val, config, out_dir=tmp_path / "cut", resume_from=cut, progress=False)
    a, b = read_checkpoint(tmp_path / "whole" / "last.safetensors"), read_checkpoint(cut)
    for name in a.weights:
        np.testing.assert_array_equal(b.weights[name], a.weights[name], err_msg=name)
        np.testing.assert_array_equal(b.adam.v[name], a.adam.v[name], err_msg=name)
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    assert b.trainer_state == a.trainer_state and "position" not in b.trainer_state


def test_a_step_checkpoint_of_other_data_is_refused(backend, tmp_path, monkeypatch):
    import vae_core.train.loop
    from vae_core import CheckpointError, TrainConfig, fit
    from vae_core.train.interrupt import TrainingInterrupted

    config = TrainConfig(epochs=2, batch_size=8, checkpoint_every_steps=5)
    monkeypatch.setattr(vae_core.train.loop, "StopSignals", lambda: StopAfterChecks(2))
    with pytest.raises(TrainingInterrupted):
        fit(_model(backend), _x(100), None, config, out_dir=tmp_path, progress=False)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"stopped at step \d+ of epoch 1 of a run with 100 training examples "
                                              r"and batch_size 8, but this run has 64 and 8"):
        fit(_model(backend), _x(64), None, config, resume_from=tmp_path / "last.safetensors", progress=False)


def test_a_stop_before_the_first_step_saves_nothing_and_says_so(backend, tmp_path, monkeypatch):
    import vae_core.train.loop
    from vae_core import TrainConfig, fit
    from vae_core.train.interrupt import TrainingInterrupted

    monkeypatch.setattr(vae_core.train.loop, "StopSignals", lambda: StopAfterChecks(0))
    with pytest.raises(TrainingInterrupted, match=r"at epoch 0, step 0 .* nothing was saved") as stop:
        fit(_model(backend), _x(40), None, TrainConfig(epochs=2, batch_size=8), out_dir=tmp_path, progress=False)
    assert stop.value.checkpoint is None and not (tmp_path / "last.safetensors").exists()


def test_uint8_images_train_as_their_float_values(backend):
    """uint8 data stays uint8 in the trainer and becomes x / 255 per batch: the history equals that of the float32
    values x / 255, bit for bit, given as rows or as (N, H, W) images. (The conversion comes before the model, so
    the MLP shows it for both architectures; dynamic binarization of uint8 data is 0/255 uint8, tested in
    test_data, and takes the same per-batch path.)"""
    from vae_core import TrainConfig, evaluate, fit

    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    floats = images.reshape(40, 64).astype(np.float32) / np.float32(255.0)
    config = TrainConfig(epochs=1, batch_size=16)
    runs = [fit(_model(backend), x, val, config, progress=False) for x, val in ((floats, floats[:8]), (images, images[:8]))]
    assert {k: v for k, v in runs[0].items() if k != "seconds"} == \
        {k: v for k, v in runs[1].items() if k != "seconds"}
    model = _model(backend)
    assert evaluate(model, images) == evaluate(model, floats) == evaluate(model, images[..., None])


def test_a_memory_mapped_training_set_is_read_a_batch_at_a_time(backend, tmp_path, monkeypatch):
    """The training split of a .npy stays in the file (`MappedRows`): `fit` reads only a batch (torch) or a block of
    batches (TF, JAX) at a time, never the whole set, each example once an epoch, and trains exactly as on the same
    rows in memory."""
    from vae_core import TrainConfig, fit
    from vae_core.data import load_images
    from vae_core.data.mapped import MappedRows

    images = np.random.default_rng(0).integers(0, 256, (660, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    config = TrainConfig(epochs=1, batch_size=8)  # 75 steps; TF reads blocks of 32 batches
    data = load_images(tmp_path / "x.npy", test_fraction=1 / 11)
    assert isinstance(data.x_train, MappedRows) and len(data.x_train) == 600
    in_memory = fit(_model(backend), np.asarray(data.x_train), None, config, progress=False)

    reads = []
    take = MappedRows.take
    monkeypatch.setattr(MappedRows, "take", lambda self, rows: reads.append(len(rows)) or take(self, rows))
    monkeypatch.setattr(MappedRows, "__array__", lambda *a, **k: pytest.fail("fit read the whole training set"))
    streamed = fit(_model(backend), data.x_train, None, config, progress=False)
    assert {k: v for k, v in streamed.items() if k != "seconds"} == \
        {k: v for k, v in in_memory.items() if k != "seconds"}
    # a batch per read (torch); a block of 32 batches per read, the padding and the blocks past the epoch reading
    # nothing (TF); the two whole blocks of 32, then the 11 steps left a batch at a time (JAX)
    reads_of = {"torch": [8] * 75, "tf": [32 * 8, 32 * 8, 600 - 64 * 8], "jax": [32 * 8, 32 * 8] + [8] * 11}
    assert reads == reads_of[backend]


@pytest.mark.parametrize("spec", SPECS)
def test_images_and_rows_are_the_same_examples(backend, spec):
    """(N, H, W, C) images, channels last, are the examples of their (N, D) rows: the same reconstruction, as rows."""
    model = _model(backend, spec)
    images = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    rows = np.asarray(model.reconstruct(images.reshape(3, 64)))
    assert rows.shape == (3, 64)
    np.testing.assert_array_equal(np.asarray(model.reconstruct(images)), rows)
    with pytest.raises(ValueError, match=r"reconstruct: x must have shape \(N, 64\) or \(N, 8, 8, 1\) or "
                                         r"\(N, 8, 8\) .*got \(3, 8, 9\)"):
        model.reconstruct(np.zeros((3, 8, 9), np.float32))
