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

# Lockstep training: per-step losses over 200 Adam steps, relative. Rounding differences of ~1e-7 are
# amplified by Adam's normalisation (m / sqrt(v) is O(1) whatever the gradient's size) and compound over
# steps; 1e-4 is the bound.
LOCKSTEP_RTOL = 1e-4
