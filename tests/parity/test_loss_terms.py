"""Check 1: each backend's loss terms equal the float64 reference on the committed fixture."""

import numpy as np
import pytest

from tests.parity.drivers import loss_fixture, loss_inputs, negative_elbo, per_example
from tests.parity.tolerances import LOSS_RTOL

META, TENSORS = loss_fixture()
CASES = [c["case"] for c in META["cases"]]


def inputs(case):
    return loss_inputs(TENSORS, case)


def test_fixture_is_reproducible_from_its_script():
    from scripts import make_parity_fixture as script
    rng = np.random.default_rng(script.SEED)
    first = META["cases"][0]
    again = script.make_inputs(rng, first["likelihood"], first["regime"], first["batch"])
    for k, v in again.items():
        np.testing.assert_array_equal(v, TENSORS[f"{first['case']}.{k}"])
    assert len(CASES) == 12 and len(META["betas"]) >= 3


@pytest.mark.parametrize("case", CASES)
def test_loss_terms_match_reference(backend, case):
    likelihood = case.split(".")[0]
    arrays = inputs(case)
    recon, kl = per_example(backend, arrays, likelihood)
    np.testing.assert_allclose(recon, TENSORS[f"{case}.ref_recon"], rtol=LOSS_RTOL, atol=0)
    np.testing.assert_allclose(kl, TENSORS[f"{case}.ref_kl"], rtol=LOSS_RTOL, atol=0)
    for beta in META["betas"]:
        got = negative_elbo(backend, arrays, likelihood, beta)
        ref = TENSORS[f"{case}.beta{beta}.ref_total_recon_kl"]
        np.testing.assert_allclose(got, ref, rtol=LOSS_RTOL, atol=0, err_msg=f"beta={beta} (total, recon, kl)")


@pytest.mark.parametrize("scale", [1e-2, 1e-4, 1e-6])
def test_kl_of_near_collapsed_posteriors_matches_reference(backend, scale):
    """The inactive latent units of every trained model have mu ~ 0 and log_var ~ 0, where expm1(v) - v cancels:
    the float32 KL must still be within LOSS_RTOL of the float64 reference there."""
    from vae_core.model.losses import kl_to_standard_normal

    rng = np.random.default_rng(int(-np.log10(scale)))
    mu = (scale * rng.standard_normal((64, 20))).astype(np.float32)  # (B, L)
    log_var = (scale * rng.standard_normal((64, 20))).astype(np.float32)  # (B, L)
    arrays = {"x": np.zeros((64, 1), np.float32), "decoder_out": np.zeros((64, 1), np.float32), "mu": mu,
              "log_var": log_var}
    _, kl = per_example(backend, arrays, "bernoulli")
    np.testing.assert_allclose(kl, kl_to_standard_normal(mu, log_var), rtol=LOSS_RTOL, atol=0)
