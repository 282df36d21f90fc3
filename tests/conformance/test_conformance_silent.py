"""Issue 32, no silent data changes, in every backend: a masked array is refused (its mask would be ignored), and a
resume with nothing to train says so, returns the history as it is and writes nothing."""
import hashlib
import warnings

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, build, evaluate, fit
from vae_core.io.checkpoint import read_checkpoint

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2, image_shape=(8, 8))
X = np.random.default_rng(0).random((40, 64), dtype=np.float32)


def _files(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_masked_array_is_refused_by_fit_and_evaluate_and_one_that_masks_nothing_is_read(backend):
    model = build(backend, SPEC, seed=0)
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, bool))
    masked[[2, 7], 5] = np.ma.masked  # two examples with a masked value
    config = TrainConfig(epochs=1, batch_size=16)
    with pytest.raises(ValueError, match=r"^train is a NumPy masked array with 2 masked value\(s\) in 2 of its 40 "
                                         r"examples; .*x\.filled\(value\)"):
        fit(model, masked, None, config, progress=False)
    with pytest.raises(ValueError, match=r"^val is a NumPy masked array .*in 2 of its 40 examples"):
        fit(model, X, masked.reshape(40, 8, 8), config, progress=False)  # images too
    with pytest.raises(ValueError, match=r"^x is a NumPy masked array with 2 masked value\(s\)"):
        evaluate(model, masked)
    history = fit(model, np.ma.masked_array(X), None, config, progress=False)  # masks nothing: read as X
    assert len(history["train_loss"]) == 1 and np.isfinite(history["train_loss"][0])
    plain = evaluate(model, X)
    assert evaluate(model, np.ma.masked_array(X))["loss"] == pytest.approx(plain["loss"], rel=1e-6)


def test_a_resume_with_nothing_to_train_warns_returns_the_history_and_writes_nothing(backend, tmp_path):
    config = TrainConfig(epochs=2, batch_size=16)
    trained = fit(build(backend, SPEC, seed=0), X, None, config, out_dir=tmp_path, progress=False)
    before = _files(tmp_path)
    last = tmp_path / "last.safetensors"
    for epochs in (1, 2):
        with pytest.warns(UserWarning, match=r"resume_from='.*last\.safetensors' already has 2 epochs and "
                                             r"config\.epochs is %d \(the total to reach, not the epochs to add\), so "
                                             r"there is nothing to train; to train more, pass the new total, e.g. "
                                             r"epochs=3; fit returns its history as it is, and writes nothing" % epochs
                          ) as caught:
            history = fit(build(backend, SPEC, seed=0), X, None, config.replace(epochs=epochs), out_dir=tmp_path,
                          resume_from=last, progress=False)
        assert {w.filename for w in caught} == {__file__}  # it points at the user's call
        assert history["train_loss"] == trained["train_loss"] and len(history["seconds"]) == 2
        assert _files(tmp_path) == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # epochs=3 has one to train: no warning
        history = fit(build(backend, SPEC, seed=0), X, None, config.replace(epochs=3), out_dir=tmp_path,
                      resume_from=last, progress=False)
    assert len(history["train_loss"]) == 3 and read_checkpoint(last).epoch == 3


def test_a_run_early_stopping_ended_trains_on_only_when_the_new_config_lets_it(backend, tmp_path):
    from vae_core import save_checkpoint

    config = TrainConfig(epochs=5, batch_size=16, early_stopping=True, early_stopping_patience=1)
    state = {"lr": 1e-3, "monitor": "train_loss", "best_loss": 0.0, "best_epoch": 1, "plateau_bad_epochs": 0,
             "early_stopping_bad_epochs": 1, "stopped_early": True}  # stopped after epoch 2
    model = build(backend, SPEC, seed=0)
    path = save_checkpoint(tmp_path / "c.safetensors", model, train_config=config, epoch=2,
                           history={"train_loss": [0.0, 1.0]}, trainer_state=state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model, X, None, config, resume_from=path, progress=False)
    messages = [str(w.message) for w in caught]
    assert history["train_loss"] == [0.0, 1.0]
    assert any("was stopped by early stopping after epoch 2 (no improvement for 1 epochs), so there is nothing to "
               "train; to train on, pass early_stopping=False or a larger early_stopping_patience=2, with epochs=5 "
               "or more" in m for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no Adam state in this checkpoint
        history = fit(model, X, None, config.replace(early_stopping=False), resume_from=path, progress=False)
    assert len(history["train_loss"]) == 5
