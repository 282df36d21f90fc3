"""The parity suite's tolerances, one per check, each with the reason for its value.

Anchor: transformers' PyTorch/TensorFlow equivalence tests use 1e-5 max-abs. Ours are as tight or tighter.
"""

# Loss terms (float32 backend vs float64 reference), relative. A float32 sum of 784 per-pixel terms with
# pairwise reduction errs by about log2(784) * 6e-8 = 6e-7 relative; 1e-6 leaves no room for a wrong
# reduction or an unstable formula (those err by 1e-3 or more), and is what the issue asks for.
LOSS_RTOL = 1e-6

# Forward pass with shared weights: mu, log_var and decoder output, max-abs. Two float32 GEMM chains of
# depth 5 (784-400-400-20-400-400-784) with different summation orders differ by ~1e-6 on O(1)-O(10)
# activations; 1e-5 is transformers' value.
FORWARD_ATOL = 1e-5

# Gradients of the loss w.r.t. every weight, relative by norm: ||g_torch - g_tf|| / ||g_torch||. Backprop
# adds one more GEMM chain of rounding on top of the forward pass.
GRAD_RTOL = 1e-5

# Optimizer update given the same weights, moments and gradients (check 3b): torch's fused CPU Adam (what the torch
# fit uses) against TF's TorchAdam (what the TF fit uses, XLA-compiled), elementwise in float32 ulps, over weights,
# m and v after each of three steps. TorchAdam writes the fused kernel's two fma as float32 `a * b + c`, which XLA
# contracts into fma (backends/tf/optim.py); measured (2026-11-24, default model, this CPU): weights, m and v equal
# bit for bit. One ulp in at most 1e-4 of the elements is allowed for a CPU or compiler that contracts differently
# (the float64 emulation used before left v 1 ulp off in 3 of 973,624 elements); writing v's sum in the other
# order (v * b2 first) leaves 20% of v 1-2 ulps off and weights up to 4096 ulps off at step 3, and fails this.
ADAM_MAX_ULP = 1
ADAM_MISMATCH_FRACTION = 1e-4

# Lockstep training: per-step losses of `fit(shared_noise=True)` in both backends, relative (check 4).
# Measured (2026-11-24, default model, one mnist-5k batch of 128, Adam 1e-3, CPU, scripts/parity_report.py):
# 1.1e-7 over the first 50 steps (1-2 float32 ulps of the loss), 7.5e-5 by step 100, 2.6e-3 at step 190
# (2.8e-3 at step 191 once torch's Bernoulli backward became one fused function: another rounding, same growth).
# The 1e-4 over 200 steps is NOT met, and cannot be by matching arithmetic: the divergence is
# amplification, not per-step error. (1) Resynchronised from the same state (below) the backends agree to
# 1.8e-7 per step even at step 190. (2) Torch against itself with a mathematically identical Linear (bias added
# after the GEMM instead of inside addmm) diverges by 4.3e-4 over the same 200 steps; with every initial weight
# moved one ulp, by 6.3e-5 in 50 steps and 2.6e-3 in 200. Mechanism (measured on the torch/torch pair): a
# rounding-level difference flips one ReLU pre-activation that sits within rounding of zero (first at step 52);
# the flipped unit's weight gradients go from exactly 0 to nonzero in one run only, and Adam, which normalises
# by sqrt(v), turns those tiny gradients into lr-sized steps; from step ~135 (leaving the plateau) flips
# multiply (1 -> 800 per step by step 185). Matching TF's forward kernels bit for bit to torch's (MKL/oneDNN vs
# XLA's Eigen GEMMs) is not possible from Python, and TF's oneDNN switch and thread counts do not change the
# XLA-compiled training step at all (identical curves). Bounds: LOCKSTEP_RTOL over the first LOCKSTEP_STEPS
# steps, ~90x the measured gap and small enough to fail a one-ulp shift of every initial weight (6.3e-5);
# LOCKSTEP_RTOL_200 over all 200 steps as a regression guard (3.6x the measured gap). Other likelihoods (report
# only): gaussian 8e-8 / 4.7e-5 (meets 1e-4 over 200); gaussian_learned 1.6e-2 within 50 steps.
LOCKSTEP_RTOL = 1e-5
LOCKSTEP_STEPS = 50
LOCKSTEP_RTOL_200 = 1e-2

# Lockstep training in float64 (check 4 as the issue states it: 200 steps within 1e-4): the same runs with
# `fit(precision="fp64")` in both backends (weights, activations, loss and Adam in float64). Rounding differences
# now start at ~1e-16 instead of ~1e-7, so the amplification above stays far below any bound, and what remains is
# whether the two fits compute the same algorithm. Measured (2026-11-24, default model, Bernoulli): 1.2e-14 over
# the first 50 steps and 2.7e-13 over 200. The bound is 1e-9 (over 3,000x the measured gap, and 1e5 tighter than
# the issue's 1e-4). Two real differences in fp64, for scale: Keras' Adam (epsilon hat) in TF gives 3.9e-7 at
# step 2 and 8.6e-3 by step 200 (it crosses 1e-4 between steps 10 and 50); a TF learning rate 1e-6 too high gives
# 3.0e-8 at step 2 and 5.0e-3 by step 200. Both fail this bound at step 2.
# gaussian: 4.6e-16 over 200 steps. gaussian_learned is tested over 50 steps: its loss swings by hundreds of
# nats per step, and even in float64 the gap grows smoothly from 6e-15 (10 steps) and 2.7e-12 (50) to 3.4e-6 (100)
# and O(1) (200): amplification of rounding, not a different algorithm, which would show by step 2 as above.
LOCKSTEP_FP64_RTOL = 1e-9

# Resynchronised lockstep (the honest per-step measure): TF resumes from torch's checkpoint (weights, Adam moments
# and step) after 50, 100, 150 and 190 steps and runs 10 more; per-step losses relative, and the weights after
# the 10 steps as ||w_tf - w_torch|| / ||w_torch||. Measured (default model): losses <= 1.8e-7 while the loss
# itself moves by 1e-2 to 4e-2 over each window; weights <= 2.9e-8. Bounds ~6x and ~7x those: the weight bound
# fails a TF learning rate off by 1e-5 relative (measured 4.3e-7 from step 100). (gaussian_learned, not tested
# here: its loss swings by hundreds of nats per step and resynchronised it agrees only to 6.5e-6 / 2.6e-7; see
# scripts/results/parity_report.md.)
# The weight bound applies to the median window: a systematic difference (a learning rate, an epsilon) moves
# every window. A single window may exceed it when one ReLU unit's pre-activation sits within float32 rounding of
# zero and the two frameworks round it to opposite signs: that unit's gradient is then on in one and off in the
# other. Measured (2026-12-01, an AVX2 CPU, default model): the window after step 190 ended at 6.1e-6, all of it in
# encoder unit 235 of the second layer and the weights feeding it, with its losses still within 1.0e-7; the other
# windows 2.7e-8 to 7.7e-8. LOCKSTEP_RESYNC_WEIGHT_FLIP_RTOL bounds any one window, ~3x that event.
LOCKSTEP_RESYNC_RTOL = 1e-6
LOCKSTEP_RESYNC_WEIGHT_RTOL = 2e-7
LOCKSTEP_RESYNC_WEIGHT_FLIP_RTOL = 2e-5

# IWAE log-likelihood per image, torch vs TF on the same weights and the same (shared NumPy) noise, relative.
# Each log weight is a float32 sum of 784 pixel terms and two 20-dim latent terms, so it rounds like a loss term
# (LOSS_RTOL's 6e-7 bound), from decoder outputs that differ by ~1e-6 (FORWARD_ATOL's GEMM chains; their effect
# on a log weight is a random-signed sum, ~sqrt(784) * 1e-6 nats on ~500); the log-sum-exp over the samples is
# float64 in both. Measured (2026-11-23, default model, 32 mnist-5k test images, k=64, all three likelihoods):
# at most 5e-8. 1e-6 keeps LOSS_RTOL's reasoning and fails a missing constant or a wrong reduction (>= 1e-3).
IWAE_RTOL = 1e-6
