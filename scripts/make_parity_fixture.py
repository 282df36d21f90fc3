"""Write tests/parity/fixtures/losses.safetensors: fixed float32 inputs and the float64 values of vae_core.model.losses.

Reproducible: the inputs come from np.random.default_rng(SEED), and the references are computed in float64
from the exact float32 inputs. Run: python -m scripts.make_parity_fixture (it rewrites the committed file).

Cases: every likelihood x regime ("typical", "extreme") x batch size (1, 128), each with the totals for
several beta. Extreme means logits up to +-1e4, latent log-variances in [-30, 30], decoder log-variances in
[-15, 15] and latent means up to ~100.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vae_core.model import losses
from vae_core.model.spec import LIKELIHOODS

SEED = 20261123
D, L = 784, 20
BATCHES = (1, 128)
REGIMES = ("typical", "extreme")
BETAS = (0.0, 0.5, 1.0, 4.0)
OUT = Path(__file__).resolve().parent.parent / "tests" / "parity" / "fixtures" / "losses.safetensors"


def make_inputs(rng: np.random.Generator, likelihood: str, regime: str, b: int) -> dict[str, np.ndarray]:
    x = rng.uniform(0, 1, (b, D))
    x[rng.uniform(size=(b, D)) < 0.5] = 0.0  # MNIST-like: many exact zeros and ones
    x[rng.uniform(size=(b, D)) < 0.1] = 1.0
    if regime == "typical":
        mu, log_var = rng.normal(0, 1, (b, L)), rng.normal(-1, 1, (b, L))
        logits, means, dec_log_var = rng.normal(0, 4, (b, D)), rng.normal(0.5, 0.3, (b, D)), rng.normal(-2, 1, (b, D))
    else:
        mu, log_var = rng.normal(0, 30, (b, L)), rng.uniform(-30, 30, (b, L))
        logits = rng.choice([-1, 1], (b, D)) * 10 ** rng.uniform(0, 4, (b, D))
        means, dec_log_var = rng.normal(0.5, 5, (b, D)), rng.uniform(-15, 15, (b, D))
    out = {"bernoulli": logits, "gaussian": means, "gaussian_learned": np.concatenate([means, dec_log_var], 1)}
    f32 = {k: v.astype(np.float32) for k, v in
           {"x": x, "decoder_out": out[likelihood], "mu": mu, "log_var": log_var}.items()}
    return f32


def main() -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(SEED)
    tensors, cases = {}, []
    for likelihood in LIKELIHOODS:
        for regime in REGIMES:
            for b in BATCHES:
                case = f"{likelihood}.{regime}.b{b}"
                inputs = make_inputs(rng, likelihood, regime, b)
                tensors.update({f"{case}.{k}": v for k, v in inputs.items()})
                recon = losses.reconstruction_nll(inputs["x"], inputs["decoder_out"], likelihood)  # (B,) float64
                kl = losses.kl_to_standard_normal(inputs["mu"], inputs["log_var"])  # (B,) float64
                tensors[f"{case}.ref_recon"], tensors[f"{case}.ref_kl"] = recon, kl
                for beta in BETAS:
                    ref = losses.negative_elbo(inputs["x"], inputs["decoder_out"], inputs["mu"], inputs["log_var"],
                                               likelihood=likelihood, beta=beta)
                    tensors[f"{case}.beta{beta}.ref_total_recon_kl"] = np.array(ref, dtype=np.float64)
                cases.append({"case": case, "likelihood": likelihood, "regime": regime, "batch": b})
    # One metadata key: safetensors writes its metadata map in hash order, which would change the bytes.
    meta = {"fixture": json.dumps({"seed": SEED, "cases": cases, "betas": BETAS})}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT), metadata=meta)
    print(f"wrote {len(cases)} cases x {len(BETAS)} betas to {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
