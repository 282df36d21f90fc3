"""Write tests/parity/fixtures/tf_cpu_reference.safetensors: TF CPU outputs for the parity suite's fixed inputs.

Check 7 compares torch on CUDA with TensorFlow on the CPU. GPU machines have torch but no TensorFlow, so the TF
side comes from this committed file; on machines with TensorFlow, tests/parity checks that the file is what TF
computes now (test_committed_tf_reference_*). Contents, from tests/parity/drivers.py's drivers and inputs:

    {likelihood}.forward.{decoder_out,mu,log_var}   check 2: `forward` on batch(spec, FORWARD_SEED), init seed 0
    bernoulli.grad.{weight}                          check 3: `gradients` on batch(spec, GRADIENT_SEED), beta 1
    bernoulli.lockstep                               check 4: per-step losses of the 200-step lockstep `fit`

(Gradients for the default model only: 3.9 MB per likelihood.) Run: python -m scripts.make_tf_reference
(rewrites the committed file; the oneDNN setting in effect is recorded in the metadata).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from tests.parity.drivers import (FORWARD_SEED, GRADIENT_SEED, TF_REFERENCE, batch, build_shared, forward, gradients,
                                  lockstep_config, lockstep_data, lockstep_losses)
from vae_core import LIKELIHOODS, VAESpec  # noqa: E402


def compute() -> dict[str, np.ndarray]:
    """The reference tensors, computed now with TensorFlow on the CPU."""
    import tensorflow as tf

    tensors: dict[str, np.ndarray] = {}
    with tf.device("/CPU:0"):
        for likelihood in LIKELIHOODS:
            spec = VAESpec(likelihood=likelihood)
            out = forward("tf", build_shared("tf", spec), *batch(spec, seed=FORWARD_SEED))
            tensors.update({f"{likelihood}.forward.{k}": v for k, v in out.items()})
        spec = VAESpec(likelihood="bernoulli", beta=1.0)
        grads = gradients("tf", build_shared("tf", spec), *batch(spec, seed=GRADIENT_SEED))
        tensors.update({f"bernoulli.grad.{k}": v for k, v in grads.items()})
    tensors["bernoulli.lockstep"] = lockstep_losses("tf", VAESpec(), lockstep_data(), lockstep_config(), device="cpu")
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def main() -> None:
    import keras
    import tensorflow as tf
    from safetensors.numpy import save_file

    tensors = compute()
    meta = {"tensorflow": tf.__version__, "keras": keras.__version__,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
            "command": "python -m scripts.make_tf_reference", "forward_seed": FORWARD_SEED,
            "gradient_seed": GRADIENT_SEED, "init_seed": 0}
    TF_REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(TF_REFERENCE), metadata={"reference": json.dumps(meta, sort_keys=True)})
    print(f"wrote {len(tensors)} tensors to {TF_REFERENCE} ({TF_REFERENCE.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
