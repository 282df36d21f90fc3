"""The torch VAE: shapes, determinism, the conveniences, neutral weights, checkpoints and Adam state."""
import numpy as np
import pytest
import torch

from backends.torch import VAE, build_model, weights
from vae_core import (CheckpointError, VAESpec, build, init_weights, load_checkpoint, read_checkpoint,
                      save_checkpoint)
from vae_core.model import losses as ref

LIKELIHOODS = ["bernoulli", "gaussian", "gaussian_learned"]
SMALL = VAESpec(input_dim=12, hidden_dims=(9, 7), latent_dim=3)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("hidden", [(), (5,), (16, 8, 4), (400, 400)])
def test_shapes_for_every_likelihood_and_depth(likelihood, hidden):
    spec = VAESpec(input_dim=20, hidden_dims=hidden, latent_dim=3, likelihood=likelihood)
    model = build("torch", spec, seed=0)
    assert isinstance(model, VAE) and model.backend_name == "torch" and model.spec == spec
    x = torch.rand(4, 20)
    out, mu, log_var = model(x)
    assert out.shape == (4, spec.output_dim) and mu.shape == log_var.shape == (4, 3)
    assert spec.output_dim == (40 if likelihood == "gaussian_learned" else 20)
    assert model.decode(mu).shape == (4, spec.output_dim)
    assert model.sample(5, seed=0).shape == (5, 20)
    assert model.reconstruct(x).shape == (4, 20)
    assert model.interpolate(x[0], x[1], steps=6).shape == (6, 20)
    assert len(model.encoder) == len(model.decoder) == len(hidden)
    assert sum(p.numel() for p in model.parameters()) == spec.num_params


def test_fixed_eps_makes_forward_deterministic_and_matches_the_reparameterisation():
    model = build_model(SMALL, seed=1)
    x, eps = torch.rand(6, 12), torch.randn(6, 3)
    out1, mu, log_var = model(x, eps)
    out2, _, _ = model(x, eps)
    assert torch.equal(out1, out2)
    assert torch.equal(out1, model.decode(mu + torch.exp(0.5 * log_var) * eps))
    out3, _, _ = model(x)  # fresh noise: different
    assert not torch.equal(out1, out3)


def test_sample_is_reproducible_without_grad_and_restores_train_mode():
    model = build_model(SMALL, seed=1)
    model.train()
    a, b, c = model.sample(8, seed=3), model.sample(8, seed=3), model.sample(8, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not a.requires_grad and a.grad_fn is None
    assert ((a > 0) & (a < 1)).all()  # Bernoulli means: probabilities
    assert model.training
    np.asarray(a)  # usable as an image without .detach() (the seed's visualize_samples failed here)
    state = torch.random.get_rng_state()
    model.sample(2, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # a seeded sample leaves the global RNG alone


def test_sample_returns_means_in_data_space_for_gaussians():
    spec = SMALL.replace(likelihood="gaussian_learned")
    model = build_model(spec, seed=0)
    z = torch.from_numpy(np.random.default_rng(9).standard_normal((5, 3), dtype=np.float32))
    with torch.no_grad():
        expected = model.decode(z)[:, :12]
    assert torch.equal(model.sample(5, seed=9), expected)


def test_reconstruct_decodes_the_encoder_mean_and_accepts_numpy():
    model = build_model(SMALL, seed=2)
    x = np.random.default_rng(0).random((3, 12)).astype(np.float32)
    got = model.reconstruct(x)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(x))
        expected = torch.sigmoid(model.decode(mu))
    assert torch.equal(got, expected) and torch.equal(got, model.reconstruct(torch.from_numpy(x)))
    assert model.reconstruct(x[0]).shape == (1, 12)
    with pytest.raises(ValueError, match=r"reconstruct: x must have shape \(N, 12\).*got \(2, 13\)"):
        model.reconstruct(np.zeros((2, 13), np.float32))
    with pytest.raises(TypeError, match="NumPy array or a torch.Tensor"):
        model.reconstruct([[0.0] * 12])


def test_interpolate_runs_between_the_encoder_means():
    model = build_model(SMALL, seed=2)
    x1, x2 = np.random.default_rng(1).random((2, 12)).astype(np.float32)
    path = model.interpolate(x1, x2[None], steps=5)
    assert torch.allclose(path[0], model.reconstruct(x1)[0], atol=1e-6)
    assert torch.allclose(path[-1], model.reconstruct(x2)[0], atol=1e-6)
    with torch.no_grad():
        mu1, mu2 = model.encode(torch.from_numpy(x1)[None])[0], model.encode(torch.from_numpy(x2)[None])[0]
        mid = torch.sigmoid(model.decode(0.5 * mu1 + 0.5 * mu2))[0]
    assert torch.allclose(path[2], mid, atol=1e-6)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        model.interpolate(x1, x2, steps=0)
    with pytest.raises(ValueError, match="x2 must be one example"):
        model.interpolate(x1, np.stack([x1, x2]), steps=3)


def test_forward_loss_matches_the_reference_on_the_models_own_outputs():
    spec = SMALL.replace(likelihood="gaussian_learned", beta=0.5)
    model = build_model(spec, seed=3)
    x, eps = torch.rand(7, 12), torch.randn(7, 3)
    from backends.torch.losses import negative_elbo

    out, mu, log_var = model(x, eps)
    got = negative_elbo(x, out, mu, log_var, likelihood=spec.likelihood, beta=spec.beta)
    want = ref.negative_elbo(*(a.detach().numpy() for a in (x, out, mu, log_var)), likelihood=spec.likelihood,
                             beta=spec.beta)
    assert [float(g.detach()) for g in got] == pytest.approx(list(want), rel=1e-6)


# ---------------------------------------------------------------- weights


def test_build_uses_init_weights_and_leaves_the_global_rng_alone():
    spec = VAESpec()
    state = torch.random.get_rng_state()
    model = build("torch", spec, seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    exported, expected = weights.export_weights(model), init_weights(spec, 7)
    assert list(exported) == list(spec.weight_shapes())
    for name, array in expected.items():
        assert exported[name].dtype == np.float32 and exported[name].flags.c_contiguous
        np.testing.assert_array_equal(exported[name], array)
    # Kernels are (in, out): torch's Linear.weight transposed.
    np.testing.assert_array_equal(model.encoder[0].weight.detach().numpy(), expected["encoder.0.kernel"].T)
    assert not np.array_equal(exported["encoder.0.kernel"], weights.export_weights(build("torch", spec, seed=8))
                              ["encoder.0.kernel"])


def test_exported_weights_and_moments_are_copies():
    model = build_model(SMALL, seed=0)
    opt = _adam_after_steps(model, steps=1)
    exported, adam = weights.export_weights(model), weights.export_adam(model, opt)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for state in opt.state.values():
        state["exp_avg"].add_(1.0)
    after = weights.export_weights(model)
    for name in exported:  # every exported array (biases included) kept the values it had
        np.testing.assert_array_equal(after[name], exported[name] + 1.0)
    assert not np.array_equal(adam.m["encoder.mu.bias"], weights.export_adam(model, opt).m["encoder.mu.bias"])


def test_weights_round_trip_and_import_validates():
    a, b = build_model(SMALL, seed=0), build_model(SMALL, seed=1)
    weights.import_weights(b, weights.export_weights(a))
    x = torch.rand(4, 12)
    assert torch.equal(a.reconstruct(x), b.reconstruct(x))
    w = weights.export_weights(a)
    w["encoder.0.kernel"] = w["encoder.0.kernel"].T.copy()
    with pytest.raises(CheckpointError, match=r"'encoder.0.kernel': expected shape \(12, 9\) float32, found shape "
                                              r"\(9, 12\)"):
        weights.import_weights(b, w)
    w = weights.export_weights(a)
    w["decoder.out.bias"] = np.full_like(w["decoder.out.bias"], np.nan)
    with pytest.raises(CheckpointError, match="NaN or inf"):
        weights.import_weights(b, w)
    del w["decoder.out.bias"]
    with pytest.raises(CheckpointError, match=r"missing \['decoder.out.bias'\]"):
        weights.import_weights(b, w)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    spec = SMALL.replace(likelihood="gaussian")
    model = build_model(spec, seed=4)
    path = save_checkpoint(tmp_path / "m.safetensors", model, epoch=3, trainer_state={"lr": 1e-3})
    back = load_checkpoint(path, "torch")
    assert isinstance(back, VAE) and back.spec == spec
    x, eps = torch.rand(5, 12), torch.randn(5, 3)
    for got, want in zip(back(x, eps), model(x, eps)):
        assert torch.equal(got, want)
    ckpt = read_checkpoint(path)
    assert ckpt.backend == "torch" and ckpt.epoch == 3 and ckpt.adam is None


def _adam_after_steps(model, steps=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    for _ in range(steps):
        out, mu, log_var = model(torch.rand(8, 12), torch.randn(8, 3))
        opt.zero_grad()
        (out.square().mean() + mu.square().mean() + log_var.exp().mean()).backward()
        opt.step()
    return opt


@pytest.mark.parametrize("fused", [True, False])
def test_adam_state_round_trip(tmp_path, fused):
    model = build_model(SMALL, seed=5)
    opt = _adam_after_steps(model)
    state = weights.export_adam(model, opt)
    assert state.step == 3 and list(state.m) == list(SMALL.weight_shapes())
    np.testing.assert_array_equal(state.m["encoder.0.kernel"], opt.state[model.encoder[0].weight]["exp_avg"].numpy().T)
    assert (state.v["decoder.out.bias"] > 0).all() and (state.v["decoder.out.kernel"] >= 0).all()

    path = save_checkpoint(tmp_path / "a.safetensors", model, optimizer=opt)
    ckpt = read_checkpoint(path)
    twin = build_model(SMALL, seed=0)
    weights.import_weights(twin, ckpt.weights)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=fused)
    weights.import_adam(twin, twin_opt, ckpt.adam)
    again = weights.export_adam(twin, twin_opt)
    assert again.step == 3
    for name in state.m:
        np.testing.assert_array_equal(again.m[name], state.m[name])
        np.testing.assert_array_equal(again.v[name], state.v[name])
    # One more identical step on both gives identical weights: the state is complete.
    x, eps = torch.rand(8, 12), torch.randn(8, 3)
    for m, o in ((model, opt), (twin, twin_opt)):
        out, mu, log_var = m(x, eps)
        o.zero_grad()
        (out.square().mean() + mu.square().mean() + log_var.exp().mean()).backward()
        o.step()
    for name, w in weights.export_weights(model).items():
        np.testing.assert_allclose(weights.export_weights(twin)[name], w, rtol=0, atol=1e-7)


def test_export_adam_before_any_step_is_zero():
    model = build_model(SMALL, seed=5)
    state = weights.export_adam(model, torch.optim.Adam(model.parameters()))
    assert state.step == 0 and all((m == 0).all() for m in state.m.values())


def test_vae_requires_a_spec():
    with pytest.raises(TypeError, match="spec must be a vae_core.VAESpec"):
        VAE({"latent_dim": 2})


def test_import_adam_does_not_alias_the_callers_arrays():
    import torch

    from backends.torch.weights import export_adam, import_adam
    from vae_core import VAESpec, build

    model = build("torch", VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.rand(4, 16))[0].sum().backward()
    opt.step()
    state = export_adam(model, opt)
    before = {k: v.copy() for k, v in state.m.items()}
    fresh = torch.optim.Adam(model.parameters(), lr=1e-2)
    import_adam(model, fresh, state)
    model(torch.rand(4, 16))[0].sum().backward()
    fresh.step()
    for name, arr in state.m.items():
        np.testing.assert_array_equal(arr, before[name], err_msg=name)
