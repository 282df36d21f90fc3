"""TF/Keras backend: plain Keras training, TorchAdam, a torch checkpoint resumed in TF, a float64 model, the tf.data
pipelines and blocks of steps. What every backend's fit, evaluate, checkpoints and resume do is in
tests/conformance/."""
import pickle

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import backends.tf as tfb  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import vae_core.model.losses as ref  # noqa: E402
from vae_core import (CheckpointError, TrainConfig, VAESpec, build, load_checkpoint, read_checkpoint,  # noqa: E402
                      save_checkpoint)

SPEC = VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2, likelihood="gaussian")


def data(n, d=16, seed=0):
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def full_set_loss(model, x, eps):
    """The reference negative ELBO of the whole set, from the model's outputs at fixed noise."""
    out, mu, log_var = model(x, eps=eps)
    return ref.negative_elbo(x, out.numpy(), mu.numpy(), log_var.numpy(), likelihood=model.spec.likelihood,
                             beta=model.spec.beta)


def weights_of(model):
    return tfb.weights.export_weights(model)


# ----------------------------------------------------------------------------------------------- plain Keras
def test_plain_keras_fit_reports_validation_means_over_the_whole_set():
    """The seed's test_step reported the last validation batch. With 100 validation rows and batch 32 the last
    batch has 4 rows, whose KL mean differs from the full-set mean by far more than the tolerance."""
    model = build("tf", SPEC, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, x_val = data(200), data(100, seed=1)
    history = model.fit(x, epochs=2, batch_size=32, validation_data=(x_val,), verbose=0).history
    assert set(history) == {"loss", "recon", "kl", "val_loss", "val_recon", "val_kl"}
    assert history["loss"][1] < history["loss"][0]
    # KL does not depend on the noise: the reported val_kl must be the mean over all 100 rows.
    mu, log_var = (t.numpy() for t in model.encode(x_val))
    kl = ref.kl_to_standard_normal(mu, log_var)  # (100,)
    assert history["val_kl"][-1] == pytest.approx(kl.mean(), rel=1e-5)
    assert abs(kl[-4:].mean() - kl.mean()) > 100 * 1e-5 * kl.mean()  # the last-batch bug would be caught
    # With the noise fixed through a {"x", "eps"} batch, the whole validation loss is checkable too.
    eps_val = np.random.default_rng(2).standard_normal((100, 2), dtype=np.float32)
    history = model.fit(x, epochs=1, batch_size=32, validation_data=({"x": x_val, "eps": eps_val},), verbose=0).history
    want = full_set_loss(model, x_val, eps_val)
    assert [history[k][-1] for k in ("val_loss", "val_recon", "val_kl")] == pytest.approx(list(want), rel=1e-5)


def test_plain_keras_training_metrics_are_exact_epoch_means():
    """At a learning rate too small to move a float32 weight, the epoch's reported loss must equal the full-set
    loss. 200 rows in batches of 32 leave a last batch of 8: an unweighted mean of batch means would differ."""
    model = build("tf", SPEC, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-12))
    x = data(200)
    eps = np.random.default_rng(3).standard_normal((200, 2), dtype=np.float32)
    history = model.fit({"x": x, "eps": eps}, epochs=1, batch_size=32, shuffle=False, verbose=0).history
    want = full_set_loss(model, x, eps)
    assert history["loss"][0] == pytest.approx(want.total, rel=1e-5)
    assert history["recon"][0] == pytest.approx(want.recon, rel=1e-5)
    out, mu, log_var = model(x, eps=eps)
    per_example = ref.reconstruction_nll(x, out.numpy(), "gaussian") + ref.kl_to_standard_normal(mu.numpy(),
                                                                                                  log_var.numpy())
    unweighted = np.mean([per_example[i:i + 32].mean() for i in range(0, 200, 32)])
    assert abs(unweighted - want.total) > 100 * 1e-5 * want.total


# ----------------------------------------------------------------------------------------------- fit / evaluate
# (what every backend's fit, evaluate and checkpoints do is in tests/conformance/)
def test_save_checkpoint_with_a_torch_adam_writes_its_moments(tmp_path):
    """save_checkpoint(optimizer=TorchAdam): the Adam state in the neutral layout (the model's own round trip through
    load_checkpoint is tests/conformance/test_conformance_model.py's)."""
    model = build("tf", SPEC, seed=0)
    optimizer = tfb.TorchAdam(1e-2)
    optimizer.apply([tf.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    path = save_checkpoint(tmp_path / "c.safetensors", model, optimizer=optimizer, epoch=1)
    back = load_checkpoint(path, "tf")
    assert isinstance(back, tfb.VAE) and back.spec == SPEC
    adam = read_checkpoint(path).adam
    assert adam.step == 1 and np.all(adam.m["encoder.0.kernel"] == np.float32(0.1))


@pytest.mark.slow
def test_short_training_on_mnist_5k_reaches_the_measured_loss():
    """Threshold, measured on this code: after 8 epochs (default spec, batch 128, Adam 1e-3) the test loss was
    167.7, 166.8, 167.9, 167.1 nats for seeds 0-3 (545.5 at initialisation). Per-pixel-mean reconstructions
    plateau near 200 nats (epochs 2-3), and the loss still falls ~5-9 nats per epoch at epoch 8, so < 172 shows
    real learning past the plateau, allows ~4 nats of CPU/rounding drift, and fails a run an epoch behind."""
    from vae_core.data import load_dataset

    data_ = load_dataset("mnist-5k")
    model = build("tf", VAESpec(), seed=0)
    history = tfb.fit(model, data_.x_train, None, TrainConfig(epochs=8, seed=0), progress=False)
    assert history["val_loss"] == [] and len(history["train_loss"]) == 8  # no val data: val lists stay empty
    assert tfb.evaluate(model, data_.x_test)["loss"] < 172.0


def test_a_torch_checkpoint_resumes_in_tf_and_matches_torch(tmp_path):
    """Cross-backend resume, in lockstep: with shared noise the same batches and eps reach both backends, and
    TorchAdam steps as torch.optim.Adam, so a torch run resumed in TF tracks the torch run to float32 rounding."""
    pytest.importorskip("torch")
    from vae_core.registry import backend_module

    torch_backend = backend_module("torch")
    x, val = data(256), data(64, seed=1)
    config = TrainConfig(epochs=2, batch_size=32, seed=2, reduce_lr_on_plateau=True, early_stopping=True)
    reference = build("torch", SPEC, seed=0)
    want = torch_backend.fit(reference, x, val, config, shared_noise=True, progress=False, out_dir=tmp_path)
    first = build("torch", SPEC, seed=0)
    torch_backend.fit(first, x, val, config.replace(epochs=1), shared_noise=True, progress=False,
                      out_dir=tmp_path / "one")
    model = build("tf", SPEC, seed=7)
    got = tfb.fit(model, x, val, config, resume_from=tmp_path / "one" / "last.safetensors", shared_noise=True,
                  progress=False)
    assert got["train_loss"][0] == want["train_loss"][0]  # the history came along
    for key in ("train_loss", "val_loss", "val_recon", "val_kl", "lr"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    for name, arr in torch_backend.weights.export_weights(reference).items():
        np.testing.assert_allclose(weights_of(model)[name], arr, rtol=1e-4, atol=1e-5)


def test_torch_adam_matches_torch_optim_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(50).astype(np.float32)
    grads = [rng.standard_normal(50).astype(np.float32) * 10.0 ** -k for k in (8, 8, 3, 0, 6, 9)]  # ~eps to large
    param = torch.tensor(w0.copy(), requires_grad=True)
    opt = torch.optim.Adam([param], lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    var = keras.Variable(w0.copy())
    ours, keras_adam = tfb.TorchAdam(1e-2, 0.9, 0.999, 1e-8), keras.optimizers.Adam(1e-2, 0.9, 0.999, 1e-8)
    var_keras = keras.Variable(w0.copy())
    for g in grads:
        param.grad = torch.tensor(g)
        opt.step()
        ours.apply([tf.constant(g)], [var])
        keras_adam.apply([tf.constant(g)], [var_keras])
    want = param.detach().numpy()
    np.testing.assert_allclose(var.numpy(), want, rtol=1e-6, atol=1e-7)
    assert np.abs(var_keras.numpy() - want).max() > 1e-5  # Keras' own epsilon placement drifts from torch


# ----------------------------------------------------------------------------------------------- failures
class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.path), "w"))


def test_a_pickle_named_safetensors_is_rejected_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "weights.safetensors"
    path.write_bytes(pickle.dumps({"encoder.0.kernel": _Marker(marker)}))
    pickle.loads(pickle.dumps(_Marker(tmp_path / "probe")))  # the payload really would create a file
    assert (tmp_path / "probe").exists()
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(path, "tf")
    model = build("tf", SPEC, seed=0)
    with pytest.raises(CheckpointError):
        tfb.fit(model, data(40), None, TrainConfig(epochs=1), resume_from=path, progress=False)
    assert not marker.exists()


def float64_model():
    return tfb.VAE(SPEC, seed=0, dtype="float64")  # holds init_weights(SPEC, 0), widened


def test_a_float64_model_computes_in_float64():
    model64 = float64_model()
    x, eps = data(4).astype(np.float64) / 3, np.full((4, SPEC.latent_dim), 0.5)
    out, mu, log_var = model64(x, eps=eps)
    produced = (out, mu, log_var, model64.decode(mu), model64.sample(2, seed=0), model64.reconstruct(x),
                model64.interpolate(x[0], x[1], 3))
    assert {t.dtype for t in produced} == {tf.float64}
    assert model64.get_config()["dtype"] == "float64"


def test_a_float64_model_trains_only_in_fp64_and_stays_float64():
    model64, x = float64_model(), data(100)
    for precision in ("fp32", "bf16"):
        with pytest.raises(ValueError, match=f"this model is float64 .* but precision='{precision}'"):
            tfb.fit(model64, x, None, TrainConfig(epochs=1), precision=precision, progress=False)
    before = tfb.weights.native_parameters(model64)["decoder.out.bias"].numpy()
    tfb.fit(model64, x, None, TrainConfig(epochs=1, batch_size=50), precision="fp64", progress=False)
    after = tfb.weights.native_parameters(model64)["decoder.out.bias"]
    assert after.dtype == "float64" and np.abs(after.numpy() - before).max() > 1e-4
    assert np.isfinite(tfb.evaluate(model64, x)["loss"])


def test_input_pipelines_run_without_tf_data_autotuning():
    # With autotuning on, releasing an epoch's iterator stalled model.fit for up to 1.8 s on every other epoch
    # (2-core CPU, measured); fit's pipelines have fixed buffers and switch it off.
    from backends.tf.pipeline import train_dataset, val_dataset

    x = tf.constant(np.zeros((10, 4), np.float32))
    train = train_dataset(x, np.arange(10), tf.zeros((10, 2)), 4)
    val = val_dataset(np.zeros((10, 4), np.float32), np.zeros((10, 2), np.float32))
    for data in (train, val):
        assert data.options().autotune.enabled is False


def test_train_blocks_hold_the_epoch_in_order_with_masked_padding():
    from backends.tf.pipeline import train_dataset

    n, batch, latent = 10, 4, 2
    x = tf.constant(np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1))  # row i is all i
    perm = np.random.default_rng(0).permutation(n)
    eps = np.arange(n * latent, dtype=np.float32).reshape(n, latent)
    blocks = list(train_dataset(x, perm, eps, batch, batches_per_block=2))
    assert [tuple(b["x"].shape) for b in blocks] == [(2, batch, 3)] * 2  # 3 batches in 2 blocks of 2, padded
    rows = np.concatenate([b["rows"].numpy() for b in blocks])
    assert rows.tolist() == [4, 4, 2, 0]
    xs = np.concatenate([b["x"].numpy() for b in blocks]).reshape(-1, 3)  # (slots, 3)
    es = np.concatenate([b["eps"].numpy() for b in blocks]).reshape(-1, latent)  # (slots, L)
    valid = np.concatenate([np.arange(k * batch, k * batch + r) for k, r in enumerate(rows)])
    np.testing.assert_array_equal(xs[valid, 0], perm)  # the epoch's examples, in the permutation's order
    np.testing.assert_array_equal(es[valid], eps)  # position i gets row i
    # A batch size above N is one batch of N rows (no padding to batch_size); big batches make small blocks.
    assert [tuple(b["x"].shape) for b in train_dataset(x, perm, eps, 1000)] == [(1, n, 3)]
    big = np.arange(5000)
    blocks = list(train_dataset(tf.zeros((5000, 3)), big, np.zeros((5000, latent), np.float32), 1024))
    assert [tuple(b["x"].shape) for b in blocks] == [(4, 1024, 3), (4, 1024, 3)]  # BLOCK_ROWS = 4096 per block


def test_a_block_trains_as_its_batches_one_by_one():
    """VAE.train_step on a block {"x": (K, B, D), "eps": (K, B, L), "rows": (K,)} (what fit feeds) makes the same
    optimizer steps, and tracks the same means, as one Keras step per batch; the padded partial batch included."""
    from backends.tf.optim import TorchAdam

    x, eps = data(10), np.random.default_rng(1).standard_normal((10, 2), dtype=np.float32)
    starts = (0, 4, 8)  # batches of 4, 4 and 2 rows

    def padded(a):  # (10, F) -> (3, 4, F); the padding holds values that would move the weights if they leaked
        return np.concatenate([a, np.full((2, a.shape[1]), 7.0, np.float32)]).reshape(3, 4, -1)

    feeds = {"block": tf.data.Dataset.from_tensors({"x": padded(x), "eps": padded(eps),
                                                     "rows": np.array([4, 4, 2], np.int32)}),
             "batches": tf.data.Dataset.from_tensor_slices([0, 1, 2]).map(
                 lambda k: {"x": tf.gather(x, tf.range(4 * k, tf.minimum(4 * k + 4, 10))),
                            "eps": tf.gather(eps, tf.range(4 * k, tf.minimum(4 * k + 4, 10)))})}
    trained = {}
    for name, feed in feeds.items():
        model = build("tf", SPEC, seed=0)
        model.compile(optimizer=TorchAdam(1e-2), jit_compile=True)
        logs = model.fit(feed, epochs=1, verbose=0, shuffle=False).history
        trained[name] = (weights_of(model), logs, int(model.optimizer.iterations.numpy()))
    (w_block, logs_block, steps_block), (w_batches, logs_batches, steps_batches) = trained.values()
    assert steps_block == steps_batches == len(starts)
    start = weights_of(build("tf", SPEC, seed=0))
    for key in w_block:
        assert np.abs(w_batches[key] - start[key]).max() > 1e-3  # three steps of lr 1e-2 moved every tensor
        np.testing.assert_allclose(w_block[key], w_batches[key], rtol=1e-6, atol=1e-7, err_msg=key)
    for key in ("loss", "recon", "kl"):  # epoch means over the 10 examples, not over 12 slots
        assert logs_block[key] == pytest.approx(logs_batches[key], rel=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_torch_adam_lets_xla_update_kernels_in_place(tied):
    """TorchAdam.apply makes every update wait for all gradients, so the compiled step copies no kernel before
    updating it; Keras' apply (the control) leaves XLA copying every kernel that the backward pass reads."""
    import re

    from backends.tf.optim import TorchAdam

    model = build("tf", SPEC, seed=0)
    optimizer = TorchAdam(1e-3)
    optimizer.build(model.trainable_variables)
    apply = optimizer.apply if tied else (lambda g, v: keras.optimizers.Adam.apply(optimizer, g, v))
    x, eps = tf.constant(data(4)), tf.zeros((4, SPEC.latent_dim))

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            out, mu, log_var = model(x, eps=eps, training=True)
            total = tfb.losses.negative_elbo(x, out, mu, log_var, likelihood=SPEC.likelihood, beta=SPEC.beta)[0]
        apply(tape.gradient(total, model.trainable_variables), model.trainable_variables)
        return total

    hlo = step.experimental_get_compiler_ir(x)(stage="optimized_hlo")
    copied_matrices = re.findall(r"= f32\[\d+,\d+\]\{[^}]*\} copy\(", hlo)
    assert (copied_matrices == []) if tied else (len(copied_matrices) == 4), copied_matrices  # 4: 2 heads, 2 decoder
