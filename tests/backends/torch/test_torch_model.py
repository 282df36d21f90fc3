"""The torch VAE as a torch.nn.Module: its parameters, autograd and modes, torch's global RNG, the kernel layout, and
Adam state through torch.optim. What every backend's model does (shapes, fixed noise, reconstruct and interpolate,
init weights, import checks, checkpoints) is in tests/conformance/test_conformance_model.py."""
import numpy as np
import pytest
import torch

from backends.torch import VAE, build_model, weights
from vae_core import VAESpec, build, init_weights, read_checkpoint, save_checkpoint
from vae_core.model import losses as ref

LIKELIHOODS = ["bernoulli", "gaussian", "gaussian_learned"]
SMALL = VAESpec(input_dim=12, hidden_dims=(9, 7), latent_dim=3)


def test_the_module_holds_the_spec_layers_and_no_other_parameters():
    for likelihood in LIKELIHOODS:
        for hidden in [(), (5,), (16, 8, 4), (400, 400)]:
            spec = VAESpec(input_dim=20, hidden_dims=hidden, latent_dim=3, likelihood=likelihood)
            model = build("torch", spec, seed=0)
            assert len(model.encoder) == len(model.decoder) == len(hidden)
            assert sum(p.numel() for p in model.parameters()) == spec.num_params, (likelihood, hidden)


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


def test_reconstruct_takes_numpy_arrays_and_tensors_alike():
    model = build_model(SMALL, seed=2)
    x = np.random.default_rng(0).random((3, 12)).astype(np.float32)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(x))
        expected = torch.sigmoid(model.decode(mu))
    assert torch.equal(model.reconstruct(x), expected) and torch.equal(model.reconstruct(torch.from_numpy(x)), expected)
    with pytest.raises(TypeError, match="NumPy array or a torch.Tensor"):
        model.reconstruct([[0.0] * 12])


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


def test_build_leaves_the_global_rng_alone_and_holds_kernels_as_linear_weights_transposed():
    spec = VAESpec()
    state = torch.random.get_rng_state()
    model = build("torch", spec, seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    # Kernels are (in, out): torch's Linear.weight transposed.
    np.testing.assert_array_equal(model.encoder[0].weight.detach().numpy(), init_weights(spec, 7)["encoder.0.kernel"].T)


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
