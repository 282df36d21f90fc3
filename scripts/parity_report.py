"""Parity report: the parity suite's measured differences between the torch and TF backends, next to its tolerances.

Usage:
    python -m scripts.parity_report          # print the report
    python -m scripts.parity_report --out    # also write scripts/results/parity_report.md and .json

Measures with the drivers of tests/parity/drivers.py (the tests' own code) and compares with the constants of
tests/parity/tolerances.py. Checks: 1 loss terms against the float64 fixture, 2 forward pass, 3 gradients (and 3b
the optimizer update), 4 lockstep training over 50 and 200 steps (free-running, resynchronised from the same
state, and in float64), 5 checkpoints moved torch->tf and tf->torch; per likelihood; 6 the same for conv models
(forward and loss against a NumPy float64 reference, gradients, float64 lockstep, checkpoints); torch on the CPU,
and on CUDA (TF32 off) when available. TensorFlow always runs on the CPU.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported, so each setting (oneDNN on, off) is measured in
its own child process (this script with --child) and the results are merged. Torch's results do not depend on it:
the first child caches torch's lockstep curves and checkpoints for the second. On a machine without TensorFlow
(a GPU box) one child compares torch with the committed TF CPU reference (tests/parity/fixtures/
tf_cpu_reference.safetensors) instead; checks that need live TF are left out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "scripts" / "results"
SETTINGS = (("on", "1"), ("off", "0"))  # TF_ENABLE_ONEDNN_OPTS per column
RESYNC_STARTS_OTHERS = (50, 190)  # resynchronised lockstep starts for the gaussian likelihoods (time budget)


# ----------------------------------------------------------------------------------------------- measuring (child)
def _abs_rel(a, b) -> tuple[float, float]:
    """max |a - b| and max |a - b| / max |a| (scale-relative: elementwise ratios are meaningless near zero)."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(np.abs(a - b).max())
    return diff, diff / float(np.abs(a).max())


def _row(check, quantity, likelihood, device, max_abs, max_rel, tol_name, tol, on="max_rel", cmp="<", note=""):
    return {"check": check, "quantity": quantity, "likelihood": likelihood, "device": device,
            "max_abs": max_abs, "max_rel": max_rel, "tol_name": tol_name, "tol": tol, "on": on, "cmp": cmp,
            "note": note}


class Child:
    def __init__(self, cache: Path, baselines: bool):
        import numpy as np
        import torch

        from tests.parity import drivers as B
        from tests.parity import tolerances as T

        self.np, self.torch, self.B, self.T = np, torch, B, T
        self.cache, self.baselines = cache, baselines
        self.have_tf = importlib.util.find_spec("tensorflow") is not None
        self.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        self.rows: list[dict] = []
        self.extra: dict = {}
        if self.have_tf:
            self.tf_ref = None
        else:
            self.tf_ref = B.tf_reference()[1]

    # -- check 1
    def loss_terms(self):
        from vae_core import LIKELIHOODS
        META, TENSORS = self.B.loss_fixture()
        CASES = [c["case"] for c in META["cases"]]

        def inputs(case):
            return self.B.loss_inputs(TENSORS, case)

        np, B, T = self.np, self.B, self.T
        who = [("torch", d) for d in self.devices] + ([("tf", "cpu")] if self.have_tf else [])
        for likelihood in LIKELIHOODS:
            cases = [c for c in CASES if c.split(".")[0] == likelihood]
            for name, device in who:
                got = {"recon": [], "kl": [], "total": []}
                ref = {"recon": [], "kl": [], "total": []}
                for case in cases:
                    recon, kl = B.per_example(name, inputs(case), likelihood, device=device)
                    got["recon"].append(recon), ref["recon"].append(TENSORS[f"{case}.ref_recon"])
                    got["kl"].append(kl), ref["kl"].append(TENSORS[f"{case}.ref_kl"])
                    for beta in META["betas"]:
                        got["total"].append(np.array(B.negative_elbo(name, inputs(case), likelihood, beta, device)))
                        ref["total"].append(TENSORS[f"{case}.beta{beta}.ref_total_recon_kl"])
                for q in ("recon", "kl", "total"):
                    a = np.concatenate([np.ravel(v) for v in ref[q]]).astype(np.float64)
                    b = np.concatenate([np.ravel(v) for v in got[q]]).astype(np.float64)
                    diff = np.abs(a - b)
                    self.rows.append(_row("1 loss terms (vs float64)", q, likelihood, f"{name} {device}",
                                          float(diff.max()), float((diff / np.abs(a)).max()), "LOSS_RTOL",
                                          T.LOSS_RTOL, cmp="<=",
                                          note="elementwise rel; total: (total, recon, kl) batch means, 4 betas"))

    # -- TF side of checks 2-4: live TF CPU, or the committed reference without TF
    def _tf_forward(self, spec):
        B = self.B
        x, eps = B.batch(spec, seed=B.FORWARD_SEED)
        if self.have_tf:
            return B.forward("tf", B.build_shared("tf", spec), x, eps), "vs TF cpu"
        return {k: self.tf_ref[f"{spec.likelihood}.forward.{k}"] for k in ("decoder_out", "mu", "log_var")}, \
            "vs TF reference"

    def forward(self):
        from vae_core import LIKELIHOODS, VAESpec
        B, T = self.B, self.T
        for likelihood in LIKELIHOODS:
            spec = VAESpec(likelihood=likelihood)
            theirs, source = self._tf_forward(spec)
            for device in self.devices:
                ours = B.forward("torch", B.build_shared("torch", spec, device=device),
                                 *B.batch(spec, seed=B.FORWARD_SEED))
                for key in ("mu", "log_var", "decoder_out"):
                    self.rows.append(_row("2 forward", key, likelihood, f"torch {device} {source}",
                                          *_abs_rel(ours[key], theirs[key]), "FORWARD_ATOL", T.FORWARD_ATOL,
                                          on="max_abs", cmp="<=", note="64 uniform inputs, init seed 0"))

    def gradients(self):
        from vae_core import VAESpec
        np, B, T = self.np, self.B, self.T
        for likelihood, beta in B.GRADIENT_CASES:
            spec = VAESpec(likelihood=likelihood, beta=beta)
            x, eps = B.batch(spec, seed=B.GRADIENT_SEED)
            if self.have_tf:
                theirs, source = B.gradients("tf", B.build_shared("tf", spec), x, eps), "vs TF cpu"
            elif likelihood == "bernoulli":
                theirs = {n: self.tf_ref[f"bernoulli.grad.{n}"] for n in spec.weight_shapes()}
                source = "vs TF reference"
            else:
                continue
            for device in self.devices:
                ours = B.gradients("torch", B.build_shared("torch", spec, device=device), x, eps)
                rel = B.gradient_rel_diffs(ours, theirs)
                worst = max(rel, key=rel.get)
                max_abs = max(float(np.abs(ours[n] - theirs[n]).max()) for n in ours)
                self.rows.append(_row("3 gradients", "every weight", f"{likelihood} (beta {beta})",
                                      f"torch {device} {source}", max_abs, rel[worst], "GRAD_RTOL", T.GRAD_RTOL,
                                      note=f"rel: ||g_torch - g_tf|| / ||g_torch||, worst weight {worst}"))

    def adam(self):
        if not self.have_tf:
            return
        from vae_core import VAESpec
        from vae_core.model.init import init_weights
        np, B, T = self.np, self.B, self.T
        spec = VAESpec()
        weights = init_weights(spec, 0)
        model = B.build_shared("torch", spec)
        grads_seq = [B.gradients("torch", model, *B.batch(spec, seed=s)) for s in (1, 2, 3)]
        grads_seq[2] = {n: g * np.float32(1e-6) for n, g in grads_seq[2].items()}
        steps = {name: B.adam_steps(name, spec, weights, grads_seq) for name in ("torch", "tf")}
        out = {}
        for i, what in enumerate(("weights", "m", "v")):
            ulps = np.concatenate([B.ulp_distance(a[i][n], b[i][n]).ravel()
                                   for a, b in zip(steps["torch"], steps["tf"]) for n in a[i]])
            out[what] = {"max_ulp": int(ulps.max()), "elements_differing": int((ulps > 0).sum()),
                         "elements": int(ulps.size)}
            self.rows.append(_row("3b Adam update (same grads)", what, "bernoulli", "torch cpu vs TF cpu",
                                  int(ulps.max()), float((ulps > 0).mean()), "ADAM_MAX_ULP / ADAM_MISMATCH_FRACTION",
                                  [T.ADAM_MAX_ULP, T.ADAM_MISMATCH_FRACTION], on="adam", cmp="<=",
                                  note="max-abs column: max ulp; max-rel column: fraction of elements differing "
                                       "(3 steps)"))
        self.extra["adam"] = out

    # -- check 4
    def _torch_curve(self, spec, device, x, config, starts=(), precision="fp32"):
        """Torch's lockstep curve (cached for the second child); with resync starts, run in segments that leave
        checkpoints after k and k + RESYNC_STEPS steps for each start k (fp32 only: fp64 writes no checkpoints)."""
        np, B = self.np, self.B
        key = f"torch_{spec.likelihood}_{device}" + ("" if precision == "fp32" else f"_{precision}")
        path, root = self.cache / f"{key}.npy", self.cache / key
        stops = {s for k in starts for s in (k, k + B.RESYNC_STEPS)}
        if path.exists():
            return np.load(path), {s: root / f"torch_step{s}" / "last.safetensors" for s in stops}
        if stops:
            curve, ckpts = B.torch_lockstep_in_segments(spec, x, config, stops, root, device=device)
        else:
            curve, ckpts = B.lockstep_losses("torch", spec, x, config, device=device, precision=precision), {}
        np.save(path, curve)
        return curve, ckpts

    def lockstep(self):
        from vae_core import LIKELIHOODS, VAESpec
        from vae_core.train.history import NonFiniteLossError
        np, B, T = self.np, self.B, self.T
        x, config = B.lockstep_data(), B.lockstep_config()
        curves = {}
        for likelihood in LIKELIHOODS:
            spec = VAESpec(likelihood=likelihood)
            try:
                if self.have_tf:
                    theirs, source = B.lockstep_losses("tf", spec, x, config), "vs TF cpu"
                elif likelihood == "bernoulli":
                    theirs, source = self.tf_ref["bernoulli.lockstep"], "vs TF reference"
                else:
                    continue
                curves[f"tf_{likelihood}"] = theirs.tolist()
                for device in self.devices:
                    # resynchronised runs: the tests' starts for the default model, two starts for the others
                    starts = (B.RESYNC_STARTS if likelihood == "bernoulli" else RESYNC_STARTS_OTHERS) \
                        if device == "cpu" and self.have_tf else ()
                    ours, ckpts = self._torch_curve(spec, device, x, config, starts)
                    curves[f"torch_{likelihood}_{device}"] = ours.tolist()
                    gap_abs, gap = np.abs(ours - theirs), B.relative_gaps(ours, theirs)
                    n = T.LOCKSTEP_STEPS
                    dev = f"torch {device} {source}"
                    self.rows.append(_row("4 lockstep", f"first {n} steps", likelihood, dev, float(gap_abs[:n].max()),
                                          float(gap[:n].max()), "LOCKSTEP_RTOL", T.LOCKSTEP_RTOL,
                                          note="per-step loss, relative to torch's"))
                    self.rows.append(_row("4 lockstep", f"all {len(gap)} steps", likelihood, dev,
                                          float(gap_abs.max()), float(gap.max()), "LOCKSTEP_RTOL_200",
                                          T.LOCKSTEP_RTOL_200, note=f"worst at step {int(gap.argmax()) + 1}"))
                    self.rows.append(_row("4 lockstep", f"all {len(gap)} steps", likelihood, dev,
                                          float(gap_abs.max()), float(gap.max()), "issue's target (not a test)",
                                          1e-4, note="float32: amplification, see below"))
                    if starts:
                        self._resynced(spec, x, config, ours, ckpts, starts)
            except NonFiniteLossError as e:
                self.rows.append(_row("4 lockstep", "200 steps", likelihood, "torch/tf", None, None, "-", None,
                                      note=f"not measured: {e}"))
        self.extra["lockstep_curves"] = curves
        if self.have_tf:
            self._lockstep_fp64(x, config)
        if self.baselines:
            self._baselines(x, config)

    def _lockstep_fp64(self, x, config):
        """Check 4 in float64 (`fit(precision="fp64")`, both backends on the CPU): the tests' bound over 200 steps (50
        for gaussian_learned, whose runs part after ~100 steps even in float64), and the issue's 1e-4 over 200."""
        from vae_core import LIKELIHOODS, VAESpec
        from vae_core.train.history import NonFiniteLossError
        np, B, T = self.np, self.B, self.T
        for likelihood in LIKELIHOODS:
            spec = VAESpec(likelihood=likelihood)
            try:
                ours, _ = self._torch_curve(spec, "cpu", x, config, precision="fp64")
                theirs = B.lockstep_losses("tf", spec, x, config, precision="fp64")
            except NonFiniteLossError as e:
                self.rows.append(_row("4 lockstep, float64", "200 steps", likelihood, "torch/tf", None, None, "-",
                                      None, note=f"not measured: {e}"))
                continue
            gap_abs, gap = np.abs(ours - theirs), B.relative_gaps(ours, theirs)
            n = 50 if likelihood == "gaussian_learned" else len(gap)
            dev = "torch cpu vs TF cpu, float64"
            self.rows.append(_row("4 lockstep, float64", f"first {n} steps", likelihood, dev, float(gap_abs[:n].max()),
                                  float(gap[:n].max()), "LOCKSTEP_FP64_RTOL", T.LOCKSTEP_FP64_RTOL,
                                  note=f"worst at step {int(gap[:n].argmax()) + 1}"))
            self.rows.append(_row("4 lockstep, float64", f"all {len(gap)} steps", likelihood, dev, float(gap_abs.max()),
                                  float(gap.max()), "issue's target", 1e-4,
                                  note=f"worst at step {int(gap.argmax()) + 1}"))

    def _resynced(self, spec, x, config, torch_curve, ckpts, starts):
        B, T = self.B, self.T
        results = B.resynced_lockstep(spec, x, config, torch_curve, ckpts, starts=starts)
        self.extra.setdefault("resynced", {})[spec.likelihood] = {str(k): v for k, v in results.items()}
        self.extra["resync_steps"] = B.RESYNC_STEPS
        where = "/".join(str(k) for k in results)
        loss = max(r["max_rel_gap"] for r in results.values())
        distances = [r["weight_distance"] for r in results.values()]
        self.rows.append(_row("4 lockstep, resynced", f"losses, {B.RESYNC_STEPS} steps after {where}",
                              spec.likelihood, "torch cpu vs TF cpu", None, loss, "LOCKSTEP_RESYNC_RTOL",
                              T.LOCKSTEP_RESYNC_RTOL, note="TF resumes from torch's checkpoint"))
        self.rows.append(_row("4 lockstep, resynced", f"weights after those {B.RESYNC_STEPS} steps, median window",
                              spec.likelihood, "torch cpu vs TF cpu", None, statistics.median(distances),
                              "LOCKSTEP_RESYNC_WEIGHT_RTOL", T.LOCKSTEP_RESYNC_WEIGHT_RTOL,
                              note="||w_tf - w_torch|| / ||w_torch||"))
        self.rows.append(_row("4 lockstep, resynced", f"weights after those {B.RESYNC_STEPS} steps, worst window",
                              spec.likelihood, "torch cpu vs TF cpu", None, max(distances),
                              "LOCKSTEP_RESYNC_WEIGHT_FLIP_RTOL", T.LOCKSTEP_RESYNC_WEIGHT_FLIP_RTOL,
                              note="a ReLU unit at zero may flip in one window"))

    def _baselines(self, x, config):
        """Torch against itself with rounding-only perturbations: how much the trajectory amplifies."""
        from vae_core import VAESpec
        np, B = self.np, self.B
        spec = VAESpec()
        ref, _ = self._torch_curve(spec, "cpu", x, config)
        out = {}
        for variant in ("bias_after_gemm", "init_plus_one_ulp"):
            gap = B.relative_gaps(ref, B.torch_lockstep_variant(spec, x, config, variant))
            out[variant] = {f"max_rel_first_{n}": float(gap[:n].max()) for n in (50, 100, 200)}
            out[variant]["first_step_above_1e-4"] = int(np.argmax(gap > 1e-4)) + 1 if (gap > 1e-4).any() else None
        self.extra["torch_vs_torch"] = out

    # -- check 5
    def checkpoints(self):
        if not self.have_tf:
            return
        from vae_core import LIKELIHOODS, VAESpec
        from vae_core.data import load_dataset
        B, T = self.B, self.T
        digits = load_dataset("mnist-5k")
        x, val = digits.x_train[:512], digits.x_test[:256]
        for likelihood in LIKELIHOODS:
            spec = VAESpec(hidden_dims=(64,), latent_dim=4, likelihood=likelihood)
            for source, target in (("torch", "tf"), ("tf", "torch")):
                with tempfile.TemporaryDirectory() as tmp:
                    _, _, _, a, b = B.checkpoint_round_trip(source, target, x, val, Path(tmp), spec)
                worst = max((_abs_rel(a[k], b[k]) for k in a), key=lambda t: t[0])
                self.rows.append(_row("5 checkpoint", f"{source} -> {target} outputs", likelihood, "cpu", *worst,
                                      "FORWARD_ATOL", T.FORWARD_ATOL, on="max_abs", cmp="<=",
                                      note="2 epochs in the source, outputs of both on 32 images"))

    # -- check 6: conv models (the checks of tests/parity/test_conv.py)
    def conv(self):
        if not self.have_tf:
            return
        from vae_core import TrainConfig, VAESpec, losses
        from vae_core.data import load_dataset
        from vae_core.model.init import init_weights
        np, B, T = self.np, self.B, self.T
        for case, fields in B.CONV_SPECS.items():
            spec = VAESpec(**fields)
            label = f"{spec.likelihood}, conv {case}"
            x, eps = B.batch(spec, n=16, seed=0)
            ref = dict(zip(("decoder_out", "mu", "log_var"), B.reference_forward(spec, init_weights(spec, 0), x, eps)))
            want = losses.negative_elbo(x, ref["decoder_out"], ref["mu"], ref["log_var"], likelihood=spec.likelihood,
                                        beta=spec.beta).total
            for name in B.BACKENDS:
                out = B.forward(name, B.build_shared(name, spec), x, eps)
                worst = max((_abs_rel(ref[k], out[k]) for k in ref), key=lambda t: t[0])
                self.rows.append(_row("6 conv forward", "decoder_out, mu, log_var", label,
                                      f"{name} cpu vs NumPy float64", *worst, "FORWARD_ATOL", T.FORWARD_ATOL,
                                      on="max_abs", cmp="<=", note="16 uniform inputs; the reference pads and crops "
                                                                  "by vae_core.model.architecture's amounts"))
                got = losses.negative_elbo(x, out["decoder_out"].astype(np.float64), out["mu"], out["log_var"],
                                           likelihood=spec.likelihood, beta=spec.beta).total
                self.rows.append(_row("6 conv loss", "negative ELBO of the outputs", label,
                                      f"{name} cpu vs NumPy float64", abs(got - want), abs(got - want) / abs(want),
                                      "LOSS_RTOL", T.LOSS_RTOL))
            x, eps = B.batch(spec, n=16, seed=1)
            g = {name: B.gradients(name, B.build_shared(name, spec), x, eps) for name in B.BACKENDS}
            rel = B.gradient_rel_diffs(g["torch"], g["tf"])
            worst = max(rel, key=rel.get)
            self.rows.append(_row("6 conv gradients", "every weight", label, "torch cpu vs TF cpu",
                                  max(float(np.abs(g["torch"][n] - g["tf"][n]).max()) for n in rel), rel[worst],
                                  "GRAD_RTOL", T.GRAD_RTOL, note=f"worst weight {worst}"))
        spec = VAESpec(architecture="conv", image_shape=(28, 28), conv_channels=(8, 16), hidden_dims=(64,))
        x = B.lockstep_data()[:64]
        config = TrainConfig(epochs=50, batch_size=64, seed=0, grad_clip_norm=50.0)
        curves = [B.lockstep_losses(name, spec, x, config, precision="fp64") for name in B.BACKENDS]
        gap = B.relative_gaps(*curves)
        self.rows.append(_row("6 conv lockstep, float64", "50 steps, clipping on", "bernoulli, conv 28x28 (8, 16)",
                              "torch cpu vs TF cpu, float64", float(np.abs(curves[0] - curves[1]).max()),
                              float(gap.max()), "LOCKSTEP_FP64_RTOL", T.LOCKSTEP_FP64_RTOL,
                              note=f"worst at step {int(gap.argmax()) + 1}"))
        digits = load_dataset("digits")
        spec = VAESpec(architecture="conv", image_shape=(8, 8), conv_channels=(8, 16), hidden_dims=(32,), latent_dim=4)
        for source, target in (("torch", "tf"), ("tf", "torch")):
            with tempfile.TemporaryDirectory() as tmp:
                _, _, _, a, b = B.checkpoint_round_trip(source, target, digits.x_train[:512], digits.x_test[:128],
                                                        Path(tmp), spec)
            worst = max((_abs_rel(a[k], b[k]) for k in a), key=lambda t: t[0])
            self.rows.append(_row("6 conv checkpoint", f"{source} -> {target} outputs", "bernoulli, conv 8x8 (8, 16)",
                                  "cpu", *worst, "FORWARD_ATOL", T.FORWARD_ATOL, on="max_abs", cmp="<=",
                                  note="2 epochs in the source, outputs of both on 32 digits"))

    def run(self) -> dict:
        timings = {}
        for step in ("loss_terms", "forward", "gradients", "adam", "lockstep", "checkpoints", "conv"):
            t = time.perf_counter()
            getattr(self, step)()
            timings[step] = round(time.perf_counter() - t, 1)
        env = {"TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "torch": self.torch.__version__,
               "torch_threads": self.torch.get_num_threads(), "devices": self.devices}
        if self.have_tf:
            import tensorflow as tf
            env["tensorflow"] = tf.__version__
        return {"rows": self.rows, "extra": self.extra, "env": env, "timings_s": timings}


# ----------------------------------------------------------------------------------------------- report (parent)
def _passes(row, value) -> bool | None:
    if value is None or row["tol"] is None:
        return None
    if row["on"] == "adam":
        return value[0] <= row["tol"][0] and value[1] <= row["tol"][1]
    return value <= row["tol"] if row["cmp"] == "<=" else value < row["tol"]


def _measured(row):
    if row["on"] == "adam":
        return (row["max_abs"], row["max_rel"])
    return row[row["on"]]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:.1e}"


def merge(runs: dict[str, dict]) -> list[dict]:
    """One row per (check, quantity, likelihood, device, tolerance), with each setting's values."""
    merged: dict[tuple, dict] = {}
    for label, run in runs.items():
        for row in run["rows"]:
            key = (row["check"], row["quantity"], row["likelihood"], row["device"], row["tol_name"])
            entry = merged.setdefault(key, {**{k: row[k] for k in ("check", "quantity", "likelihood", "device",
                                                                    "tol_name", "tol", "on", "cmp", "note")},
                                            "settings": {}})
            entry["settings"][label] = {"max_abs": row["max_abs"], "max_rel": row["max_rel"],
                                        "pass": _passes(row, _measured(row))}
    return list(merged.values())


def render(rows: list[dict], runs: dict[str, dict], command: str, seconds: float) -> str:
    labels = list(runs)
    first = runs[labels[0]]
    env = first["env"]
    lines = [f"Command: `{command}`", "",
             "# Parity report: torch vs TF", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({os.cpu_count()} CPUs), torch "
             f"{env['torch']}, TensorFlow {env.get('tensorflow', 'not installed')}; torch devices: "
             f"{', '.join(env['devices'])}{'' if 'cuda' in env['devices'] else ' (no CUDA here: no torch cuda rows)'}"
             f". Columns per TF_ENABLE_ONEDNN_OPTS setting ({', '.join(labels)}); TF always on the CPU. "
             f"The tolerance applies to the column named in `tolerance` (abs: max-abs, rel: max-rel). "
             f"max-rel is elementwise for check 1, scale-relative (max|a-b| / max|a|) for checks 2 and 5, "
             f"relative by norm for 3, relative to torch's loss for 4. Report run time {seconds:.0f} s.", ""]
    head = "| check | quantity | likelihood | compared | " + " | ".join(
        f"max-abs ({l}) | max-rel ({l})" for l in labels) + " | tolerance | " + " | ".join(
        f"pass ({l})" for l in labels) + " |"
    lines += [head, "|" + "---|" * (4 + 2 * len(labels) + 1 + len(labels))]
    for r in rows:
        tol = r["tol"]
        if r["on"] == "adam":
            tol_s = f"{r['tol_name']} = {tol[0]} ulp / {tol[1]:.0e}"
        elif tol is None:
            tol_s = "-"
        else:
            tol_s = f"{r['tol_name']} = {tol:.0e} ({'abs' if r['on'] == 'max_abs' else 'rel'})"
        cells = []
        for l in labels:
            s = r["settings"].get(l)
            cells += [_fmt(s["max_abs"]) if s else "n/a", _fmt(s["max_rel"]) if s else "n/a"]
        passes = []
        for l in labels:
            s = r["settings"].get(l)
            passes.append("n/a" if not s or s["pass"] is None else ("pass" if s["pass"] else "**FAIL**"))
        lines.append(f"| {r['check']} | {r['quantity']} | {r['likelihood']} | {r['device']} | " + " | ".join(cells)
                     + f" | {tol_s} | " + " | ".join(passes) + " |")
    lines += ["", _changes(rows, labels), "", _lockstep_explanation(runs, labels), "", _timings(runs)]
    return "\n".join(lines) + "\n"


def _changes(rows, labels) -> str:
    if len(labels) < 2:
        return "## oneDNN on vs off\n\nOnly one setting measured (TensorFlow not installed)."
    changed = []
    for r in rows:
        a, b = (r["settings"].get(l) for l in labels[:2])
        if a and b and (a["max_abs"], a["max_rel"]) != (b["max_abs"], b["max_rel"]):
            changed.append(f"- {r['check']}, {r['quantity']}, {r['likelihood']}: max-abs {_fmt(a['max_abs'])} -> "
                           f"{_fmt(b['max_abs'])}, max-rel {_fmt(a['max_rel'])} -> {_fmt(b['max_rel'])}")
    same = len(rows) - len(changed)
    text = [f"## oneDNN on vs off ({labels[0]} -> {labels[1]})", "",
            f"{same} of {len(rows)} rows are identical under both settings; these differ:", ""]
    text += changed or ["- none"]
    text += ["", "oneDNN only reaches TensorFlow's eagerly run ops (checks 1-3 and 5 run the model eagerly). The "
                 "training step of `backends.tf.fit` is XLA-compiled (`jit_compile=True`), and XLA's CPU "
                 "backend emits its own GEMMs, so the lockstep rows and the Adam rows do not depend on the "
                 "setting; thread counts did not change them either (measured with intra-op threads 1 vs 2)."]
    return "\n".join(text)


def _lockstep_explanation(runs, labels) -> str:
    extra = runs[labels[0]]["extra"]
    out = ["## Check 4: the 200-step gap in float32 and in float64", "",
           "In float64 (`fit(precision=\"fp64\")`, the rows \"4 lockstep, float64\") the two fits agree within "
           "the issue's 1e-4 over all 200 steps, by many orders of magnitude, for the Bernoulli and Gaussian models: "
           "they run the same algorithm step for step. Two real differences, measured in float64 for scale "
           "(tests/parity/tolerances.py): Keras' own Adam (epsilon hat) gives 3.9e-7 at step 2 and 8.6e-3 by step "
           "200; a learning rate 1e-6 too high gives 3.0e-8 at step 2 and 5.0e-3 by step 200. In float32 the "
           "gap exceeds 1e-4 after about 100 steps, for the reason below.", ""]
    tvt = extra.get("torch_vs_torch")
    if tvt:
        out += ["Torch against itself, same batches and noise, perturbations that change only rounding "
                "(`tests.parity.drivers.torch_lockstep_variant`), max relative loss gap:", "",
                "| torch vs torch | first 50 steps | first 100 | all 200 | first step above 1e-4 |",
                "|---|---|---|---|---|"]
        for name, v in tvt.items():
            out.append(f"| {name} | {_fmt(v['max_rel_first_50'])} | {_fmt(v['max_rel_first_100'])} | "
                       f"{_fmt(v['max_rel_first_200'])} | {v['first_step_above_1e-4'] or '-'} |")
        out.append("")
    res = extra.get("resynced")
    if res:
        out += [f"Resynchronised: TF resumes from torch's checkpoint after k steps (weights, Adam moments, step) "
                f"and both run {extra['resync_steps']} more steps:", "",
                "| likelihood | k | max relative loss gap | weight distance after | torch loss change in window |",
                "|---|---|---|---|---|"]
        for likelihood, per_start in res.items():
            for k, v in per_start.items():
                out.append(f"| {likelihood} | {k} | {_fmt(v['max_rel_gap'])} | {_fmt(v['weight_distance'])} | "
                           f"{_fmt(v['curve_change'])} |")
        out.append("")
    out += ["Per step the backends agree to float32 rounding (resynchronised rows; and the Adam rows: given the "
            "same gradients the same update bit for bit). Free-running, rounding-level differences are amplified: "
            "a ReLU pre-activation within rounding of zero flips in one run only, the flipped unit's weight "
            "gradients go from exactly 0 to nonzero, and Adam (which divides by sqrt(v)) turns them into "
            "lr-sized steps; once training leaves its plateau (~step 135) the flips multiply. Torch against "
            "itself with the bias added after the GEMM, which is the same math, crosses 1e-4 as well, so no "
            "reordering of TF's arithmetic can meet 1e-4 over 200 steps: that would need TF's GEMMs to round "
            "exactly like torch's. The tests bound the first 50 steps (LOCKSTEP_RTOL), all 200 "
            "(LOCKSTEP_RTOL_200, a regression guard) and the resynchronised steps (LOCKSTEP_RESYNC_*), for the default "
            "(Bernoulli) model, and the float64 runs of all three likelihoods (LOCKSTEP_FP64_RTOL).", "",
            "gaussian_learned is the extreme case: its decoder log-variances run off to very negative values on "
            "MNIST's constant pixels (an unbounded likelihood), the loss falls from +770 to about -500 nats and then "
            "swings by hundreds of nats per step, and the free-running runs part within a few steps. Resynchronised "
            "they agree far better (table above), but by more than the Bernoulli-derived LOCKSTEP_RESYNC_* bounds, "
            "since within 10 steps its loss moves by tens of percent (Bernoulli: 1-4%): the same amplification, "
            "faster. The gaussian (fixed variance) model stays within 1e-4 over all 200 steps."]
    return "\n".join(out)


def _timings(runs) -> str:
    return "## Timings (s)\n\n" + "\n".join(f"- oneDNN {label}: {run['timings_s']}" for label, run in runs.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", action="store_true", help="write scripts/results/parity_report.md and .json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = Child(args.cache, args.baselines).run()
        args.json.write_text(json.dumps(result))
        return

    command = "python -m scripts.parity_report" + (" --out" if args.out else "")
    have_tf = importlib.util.find_spec("tensorflow") is not None
    settings = SETTINGS if have_tf else (("no TF", None),)
    start = time.perf_counter()
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, value) in enumerate(settings):
            out = Path(tmp) / f"{i}.json"
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
            if value is not None:
                env["TF_ENABLE_ONEDNN_OPTS"] = value
            cmd = [sys.executable, "-m", "scripts.parity_report", "--child", "--json", str(out), "--cache", tmp]
            print(f"measuring with TF_ENABLE_ONEDNN_OPTS={value} ...", file=sys.stderr, flush=True)
            subprocess.run(cmd + (["--baselines"] if i == 0 else []), env=env, check=True, cwd=ROOT)
            runs[label] = json.loads(out.read_text())
    seconds = time.perf_counter() - start
    rows = merge(runs)
    text = render(rows, runs, command, seconds)
    print(text)
    if args.out:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "parity_report.md").write_text(text)
        (RESULTS / "parity_report.json").write_text(json.dumps(
            {"command": command, "seconds": round(seconds, 1), "rows": rows, "runs": runs}, indent=1) + "\n")
        print(f"wrote {RESULTS / 'parity_report.md'} and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
