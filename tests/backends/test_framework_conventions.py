"""Each backend's model follows its framework's own conventions, so framework code written for any model works on it.

Shared behaviours (the framework's summary, the framework's save format) are one test body run for every backend
(tests/conftest.py) through its framework's own way of doing each, written in the tables below (`CONVENTIONS`); a
backend with no entry there is skipped until someone writes its framework's ways. Keras' `predict` and callbacks,
and `torch.compile`, exist in one framework only.
"""
import csv
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from vae_core import VAESpec, build

ROOT = Path(__file__).resolve().parents[2]
SPEC = VAESpec(input_dim=64, hidden_dims=(32, 16), latent_dim=3, image_shape=(8, 8))
CONV_SPEC = VAESpec(architecture="conv", image_shape=(8, 8), conv_channels=(4, 8), hidden_dims=(16,), latent_dim=3)


def _data(n: int = 96) -> np.ndarray:
    return np.random.default_rng(0).random((n, SPEC.input_dim), dtype=np.float32)  # (n, D)


def _parameter_count(spec: VAESpec) -> int:
    return sum(int(np.prod(shape)) for shape in spec.weight_shapes().values())


def _weights(model) -> list[np.ndarray]:
    if hasattr(model, "get_weights"):
        return model.get_weights()
    if model.backend_name == "jax":  # the module's nnx.Params, as Flax's own state lists them
        import jax
        from flax import nnx

        return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]
    return [p.detach().numpy() for p in model.parameters()]


def _torch_summary(model) -> str:
    return str(model)  # torch's summary: the module tree


def _keras_summary(model) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        model.summary()
    return out.getvalue()


def _torch_trained(spec: VAESpec):
    import torch

    model = build("torch", spec, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(_data())
    out, mu, log_var = model(x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out, x, reduction="sum") - 0.5 * torch.sum(
        1 + log_var - mu ** 2 - log_var.exp())
    loss.backward()
    optimizer.step()
    return model


def _keras_trained(spec: VAESpec):
    import keras

    model = build("tf", spec, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(_data(), epochs=1, batch_size=32, verbose=0)
    return model


def _torch_saved_and_loaded(model, folder, spec: VAESpec):
    """A state_dict through torch.save/torch.load(weights_only=True)."""
    import torch

    torch.save(model.state_dict(), folder / "vae.pt")
    loaded = build("torch", spec, seed=1)
    loaded.load_state_dict(torch.load(folder / "vae.pt", weights_only=True))
    return loaded


def _keras_saved_and_loaded(model, folder, spec: VAESpec):
    """A .keras archive through keras.models.load_model with safe_mode on."""
    import keras

    model.save(folder / "vae.keras")
    return keras.models.load_model(folder / "vae.keras", safe_mode=True)


def _flax_summary(model) -> str:
    return repr(model)  # Flax NNX's summary: the module tree with each layer's parameter counts


def _flax_trained(spec: VAESpec):
    """One step of Flax's usual training: nnx.grad of a loss of the module, and an nnx.Optimizer over optax.adam."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    model = build("jax", spec, seed=0)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    x = jnp.asarray(_data())

    def loss(m):
        out, mu, log_var = m(x)  # z drawn from the module's own noise stream
        return optax.sigmoid_binary_cross_entropy(out, x).sum() - 0.5 * jnp.sum(1 + log_var - mu ** 2 -
                                                                                jnp.exp(log_var))
    optimizer.update(model, nnx.grad(loss)(model))
    return model


def _flax_saved_and_loaded(model, folder, spec: VAESpec):
    """The parameters' state through Flax's own msgpack serialization (no pickle), restored into a new module."""
    from flax import nnx, serialization

    (folder / "vae.msgpack").write_bytes(serialization.msgpack_serialize(nnx.state(model, nnx.Param).to_pure_dict()))
    loaded = build("jax", spec, seed=1)
    state = nnx.state(loaded, nnx.Param)
    state.replace_by_pure_dict(serialization.msgpack_restore((folder / "vae.msgpack").read_bytes()))
    nnx.update(loaded, state)
    return loaded


# Each framework's own ways: its summary (and the word it prints for a dense layer), one epoch of its usual training
# (Adam state included), and its own save format, saved and loaded back.
CONVENTIONS = {
    "torch": dict(summary=_torch_summary, layer_word="Linear(", trained=_torch_trained,
                  saved_and_loaded=_torch_saved_and_loaded),
    "tf": dict(summary=_keras_summary, layer_word="(Dense)", trained=_keras_trained,
               saved_and_loaded=_keras_saved_and_loaded),
    "jax": dict(summary=_flax_summary, layer_word="Linear(", trained=_flax_trained,
                saved_and_loaded=_flax_saved_and_loaded),
}


@pytest.fixture
def conventions(backend):
    """The framework conventions of `backend` (every registered backend, tests/conftest.py)."""
    if backend not in CONVENTIONS:
        pytest.skip(f"no framework conventions are written for backend {backend!r} in {Path(__file__).name}")
    return CONVENTIONS[backend]


def test_the_framework_summary_lists_the_layers_and_their_parameters(backend, conventions):
    model = build(backend, SPEC, seed=0)
    text = conventions["summary"](model)
    assert text.count(conventions["layer_word"]) == len(SPEC.hidden_dims) * 2 + 3  # encoder, mu, log_var, decoder, out
    if backend == "tf":
        assert f"Total params: {_parameter_count(SPEC):,}" in text and "(Sampling)" in text
    assert sum(int(np.prod(w.shape)) for w in _weights(model)) == _parameter_count(SPEC)


@pytest.mark.parametrize("spec", [pytest.param(SPEC, id="mlp"), pytest.param(CONV_SPEC, id="conv")])
def test_the_framework_save_format_round_trips(backend, conventions, spec, tmp_path):
    model = conventions["trained"](spec)
    loaded = conventions["saved_and_loaded"](model, tmp_path, spec)
    assert type(loaded) is type(model) and loaded.spec == spec
    for saved, restored in zip(_weights(model), _weights(loaded), strict=True):
        np.testing.assert_array_equal(saved, restored)
    x = _data(8)
    np.testing.assert_array_equal(np.asarray(model.reconstruct(x)), np.asarray(loaded.reconstruct(x)))
    if backend == "tf":  # the optimizer comes back compiled, with its state
        assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 3
        for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_keras_archive_loads_in_a_fresh_process_after_importing_the_backend(tmp_path):
    """What a user's next session does: no model in memory, only `import backends.tf` to register the classes."""
    pytest.importorskip("tensorflow")
    model = build("tf", SPEC, seed=0)
    model.save(tmp_path / "vae.keras")
    np.save(tmp_path / "x.npy", _data(4))
    np.save(tmp_path / "want.npy", model.reconstruct(_data(4)).numpy())
    code = ("import sys, numpy as np, backends.tf, keras\n"
            "m = keras.models.load_model(sys.argv[1] + '/vae.keras', safe_mode=True)\n"
            "got = m.reconstruct(np.load(sys.argv[1] + '/x.npy')).numpy()\n"
            "assert np.array_equal(got, np.load(sys.argv[1] + '/want.npy')), 'different outputs'\n"
            "print(type(m).__module__, type(m).__name__)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["backends.tf.model", "VAE"]


def test_keras_archive_of_torch_adam_loads_in_safe_mode(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from backends.tf import TorchAdam

    model = build("tf", SPEC, seed=0)
    model.compile(optimizer=TorchAdam(1e-3))
    model.fit(_data(), epochs=1, batch_size=48, verbose=0)
    model.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras", safe_mode=True)
    assert type(loaded.optimizer) is TorchAdam and int(loaded.optimizer.iterations.numpy()) == 2
    loaded.fit(_data(), epochs=1, batch_size=48, verbose=0)  # and training goes on from there
    assert int(loaded.optimizer.iterations.numpy()) == 4


def test_keras_predict_returns_the_forward_outputs():
    pytest.importorskip("tensorflow")
    model = build("tf", SPEC, seed=0)
    x = _data(40)
    out, mu, log_var = model.predict(x, batch_size=16, verbose=0)
    assert out.shape == (40, SPEC.output_dim) and mu.shape == log_var.shape == (40, SPEC.latent_dim)
    want_mu, want_log_var = (t.numpy() for t in model.encode(x))
    np.testing.assert_allclose(mu, want_mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_var, want_log_var, rtol=1e-6, atol=1e-6)


def test_keras_callbacks_early_stopping_model_checkpoint_and_csv_logger(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    model = build("tf", SPEC, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = _data()
    callbacks = [
        # min_delta above any change: epoch 1 sets the best, epoch 2 does not improve, and patience 0 stops there
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9),
        keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
    ]
    history = model.fit(x, epochs=10, batch_size=32, validation_data=(x[:32],), callbacks=callbacks, verbose=0)
    assert len(history.history["loss"]) == 2
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "recon", "kl", "val_loss", "val_recon", "val_kl"} <= set(rows[0])
    np.testing.assert_allclose([float(r["val_loss"]) for r in rows], history.history["val_loss"], rtol=1e-6)
    best = keras.models.load_model(tmp_path / "best.keras", safe_mode=True)  # the epoch-1 model
    assert best.spec == SPEC


def test_torch_compile_runs_the_model():
    torch = pytest.importorskip("torch")
    model = build("torch", SPEC, seed=0)
    compiled = torch.compile(model, backend="aot_eager")  # torch's full tracing path, without a C++ toolchain
    x = torch.from_numpy(_data(8))
    eps = torch.zeros(8, SPEC.latent_dim)
    for got, want in zip(compiled(x, eps), model(x, eps), strict=True):
        torch.testing.assert_close(got, want)
