"""Verification of exported files: each half run in its runtime on a fixed batch, against the float64 NumPy reference
forward of the same weights (`vae_core.model.forward`).

The check, per output: |exported - reference| <= TOLERANCE * max(1, |reference|) element by element (absolute
for values of magnitude up to 1, relative above), on a batch of BATCH rows and on its first row alone (the batch
dimension is dynamic), and the batch run twice must give the same bits (nothing samples inside).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from vae_core.deploy.formats import PARTS, signatures
from vae_core.model.forward import decoder_mean, reference_decode, reference_encode
from vae_core.model.spec import VAESpec

TOLERANCE = 1e-5  # float32 files against the float64 reference; measured errors are ~1e-7 (docs/deploy.md)
BATCH = 16  # rows of the fixed verification batch
RULE = "|exported - reference| <= tolerance * max(1, |reference|)"

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]


class ExportVerificationError(RuntimeError):
    """Exported files that do not compute what the checkpoint's model computes (or not deterministically)."""


@dataclass(frozen=True)
class Verification:
    """What verification measured: the largest absolute error of each output against the reference."""

    runtime: str  # what ran the files, with its version
    errors: dict[str, float]  # "<part>.<output>" -> max |exported - reference| over both batches
    tolerance: float = TOLERANCE
    batch_sizes: tuple[int, ...] = (BATCH, 1)

    @property
    def max_abs_error(self) -> float:
        return max(self.errors.values())

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "reference": "vae_core.model.forward, float64 NumPy",
                "tolerance": self.tolerance, "rule": RULE, "batch_sizes": list(self.batch_sizes),
                "max_abs_error": self.errors}


def inputs(spec: VAESpec) -> dict[str, np.ndarray]:
    """The fixed batch: x (BATCH, D) uniform in [0, 1) for the encoder, z (BATCH, L) standard normal for the
    decoder, float32, the same for every format and run."""
    rng = np.random.default_rng(0)
    return {"encoder": rng.uniform(0.0, 1.0, (BATCH, spec.input_dim)).astype(np.float32),
            "decoder": rng.standard_normal((BATCH, spec.latent_dim)).astype(np.float32)}


def reference(spec: VAESpec, weights: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]
              ) -> dict[str, tuple[np.ndarray, ...]]:
    """What each half must return for `batch`, in float64: (mean, log_var) and the decoder's mean (, log_var)."""
    return {"encoder": reference_encode(spec, weights, batch["encoder"]),
            "decoder": decoder_mean(spec, reference_decode(spec, weights, batch["decoder"]))}


def verify(runners: Mapping[str, Runner], spec: VAESpec, weights: Mapping[str, np.ndarray], runtime: str,
           what: str) -> Verification:
    """Run each half (`runners[part]`) on the fixed batch; raise ExportVerificationError naming `what` (the files)
    unless every output is within the tolerance, of the right shape, and the same on a second run."""
    batch = inputs(spec)
    expected = reference(spec, weights, batch)
    errors: dict[str, float] = {}
    for part in PARTS:
        run = runners[part]
        full, again, first = run(batch[part]), run(batch[part]), run(batch[part][:1])
        names = [name for name, _ in signatures(spec)[part]["outputs"]]
        for i, name in enumerate(names):
            key, ref = f"{part}.{name}", expected[part][i]
            if len(full) != len(names) or full[i].shape != ref.shape or first[i].shape != ref[:1].shape:
                raise ExportVerificationError(
                    f"{what}: the {part} returned {[np.shape(a) for a in full]} for {len(ref)} rows and "
                    f"{[np.shape(a) for a in first]} for 1 row; expected {names} of shape {ref.shape} (and 1 row); "
                    f"the files were removed")
            if not np.array_equal(full[i], again[i]):
                raise ExportVerificationError(f"{what}: {key} differs between two runs on the same batch: the "
                                              f"files do not compute deterministically; the files were removed")
            gaps = [np.abs(np.asarray(out, np.float64) - r) for out, r in ((full[i], ref), (first[i], ref[:1]))]
            errors[key] = max(float(g.max()) for g in gaps)
            worst = max(float((g / np.maximum(1.0, np.abs(r))).max()) for g, r in zip(gaps, (ref, ref[:1])))
            if not worst <= TOLERANCE:  # `not <=`: a NaN fails too
                raise ExportVerificationError(
                    f"{what}: {key} differs from the NumPy reference of the checkpoint by {errors[key]:.3g} (max "
                    f"abs error; {worst:.3g} scaled) in {runtime}, over the tolerance {TOLERANCE:g} ({RULE}); the "
                    f"files were removed")
    return Verification(runtime=runtime, errors=errors)
