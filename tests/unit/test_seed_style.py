"""scripts/seed_style.py, the seed's loop that the benchmarks and results compare against."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from scripts import seed_style

from backends.torch import build_model, evaluate, fit  # noqa: E402
from backends.torch.weights import export_weights, import_weights  # noqa: E402
from vae_core import TrainConfig, VAESpec, init_weights  # noqa: E402
from vae_core.train.schedule import epoch_noise, epoch_permutation


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(300, 64), dtype=np.uint8)


def test_pil_items_equal_the_minimal_conversion(images):
    pil, minimal = seed_style.SeedStyleImages(images), seed_style.MinimalImages(images)
    for i in (0, 17, 299):
        a, b = pil[i][0], minimal[i][0]
        assert a.shape == (64,) and a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, torch.from_numpy(images[i] / np.float32(255)), rtol=0, atol=0)


def test_replay_noise_hands_out_rows_in_order_across_epochs():
    draws = {e: np.full((5, 2), e, np.float32) + np.arange(5, dtype=np.float32)[:, None] / 10 for e in range(3)}
    noise = seed_style.ReplayNoise(5, lambda e: draws[e])
    like = torch.zeros(2, 2)
    got = [noise(like), noise(like), noise(like[:1]), noise(like)]
    torch.testing.assert_close(torch.cat(got[:3]), torch.from_numpy(draws[0]))
    torch.testing.assert_close(got[3], torch.from_numpy(draws[1][:2]))


def test_seed_loop_with_our_init_order_and_noise_trains_like_ours(one_torch_thread, images):
    # The benchmark's premise: given the same start, batches and noise, the seed's loop and our fit compute the
    # same training, so their test losses differ only by rounding (BCE formula, Adam kernel).
    spec, config = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4), TrainConfig(epochs=2, batch_size=32)
    x = images.astype(np.float32) / 255
    n = len(x)
    ref = seed_style.SeedVAE(64, (32,), 4).load_neutral(init_weights(spec, config.seed))
    ref.noise = seed_style.ReplayNoise(n, lambda e: epoch_noise(config.seed, e, n, spec.latent_dim))
    order = seed_style.FixedOrder(n, lambda e: epoch_permutation(config.seed, e, n))
    loader = DataLoader(seed_style.SeedStyleImages(images), batch_size=32, sampler=order)
    optimizer = torch.optim.Adam(ref.parameters(), lr=config.learning_rate)
    for _ in range(config.epochs):
        seed_style.train_epoch(ref, loader, optimizer, torch.device("cpu"))

    ours = build_model(spec, seed=config.seed)
    fit(ours, x, None, config, shared_noise=True, device="cpu", progress=False)
    ref_weights = ref.neutral_weights()
    for name, w in export_weights(ours).items():
        np.testing.assert_allclose(ref_weights[name], w, rtol=1e-3, atol=1e-5, err_msg=name)
    loss_ref = evaluate(import_weights(build_model(spec), ref_weights), x, device="cpu")["loss"]
    loss_ours = evaluate(ours, x, device="cpu")["loss"]
    assert loss_ours == pytest.approx(loss_ref, rel=1e-5)
    assert loss_ours < evaluate(build_model(spec, seed=config.seed), x, device="cpu")["loss"]  # it trained


def test_seed_evaluate_is_the_mean_of_batch_means(images):
    spec = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4)
    model = seed_style.SeedVAE(64, (32,), 4).load_neutral(init_weights(spec, 0))
    model.noise = lambda like: torch.zeros_like(like)  # z = mu: deterministic
    loader = DataLoader(seed_style.MinimalImages(images), batch_size=128)  # batches of 128, 128, 44
    x = torch.from_numpy(images).float() / 255
    with torch.no_grad():
        logits, mu, log_var = model(x)
        per = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1) \
            - 0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(1)
    want = np.mean([per[:128].mean().item(), per[128:256].mean().item(), per[256:].mean().item()])
    assert seed_style.evaluate(model, loader, torch.device("cpu")) == pytest.approx(want, rel=1e-6)
    assert abs(want - per.mean().item()) > 1e-3  # the protocol differs from the exact mean here
