"""Adam with PyTorch's update rule, so `TrainConfig.adam_eps` means the same in both backends.

Keras' Adam (keras/src/optimizers/adam.py, Keras 3.15) updates, at step t (1-based):

    m <- m + (g - m)(1 - b1);  v <- v + (g^2 - v)(1 - b2)
    var <- var - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)          # "epsilon hat"

torch.optim.Adam adds eps *after* the bias correction of v:

    var <- var - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Multiplying out, Keras with `epsilon=e` is torch with eps = e / sqrt(1 - b2^t): at t = 1 (b2 = 0.999) Keras' eps
acts 31.6x larger, the factor falls to 1 as t grows (1.0005x at t = 10^4). The moments m and v are the same
(the same recursion, only rounding differs), so the Adam state is interchangeable between backends; only the
step differs, and only where sqrt(v_hat) is within a few orders of magnitude of eps (gradients ~ 1e-7).

`TorchAdam` overrides `update_step` with torch's formula in the operation order of the Adam the torch backend
uses, `torch.optim.Adam(fused=True)` on the CPU (aten/src/ATen/native/cpu/FusedAdamKernel.cpp, float32):

    m <- fma(1 - b1, g - m, m)                      # exp_avg.lerp_(grad, 1 - b1), one rounding
    v <- fma((1 - b2) * g, g, v * b2)
    denom = sqrt(v) / sqrt(1 - b2^t) + eps          # bias corrections in float64, rounded once to float32
    var <- var + (-(lr / (1 - b1^t)) * m) / denom   # step size in float64 from the float64 learning rate

TensorFlow has no fused multiply-add op, but XLA's CPU and GPU code generators contract `a * b + c` into one
fma, with the product written first in the sum (written the other way round, XLA contracts it differently and v
rounds differently from torch's). So both lines are written in float32, in that form. `backends.tf.fit` always
compiles its step with XLA. Without XLA (eager, or `jit_compile=False`) each multiply-add rounds twice: 1 ulp off
in some elements. The fma is not emulated in float64: that is slower than the float32 form, and double rounding
still leaves v 1 ulp off in rare elements.

The learning rate is kept in a float64 variable, so `optimizer.learning_rate.assign(1e-3)` holds the same double
as torch's param group (a float32 variable rounds 1e-3 up by 4.7e-8, which moves some float32 weight updates by
one ulp). Given the same weights, moments and gradients, the updated weights, m and v are meant to equal torch's
fused CPU Adam bit for bit; tests/parity compares them (test_optimizer_update_agrees_given_the_same_gradients,
through tests/parity/drivers.py `adam_steps`). Torch's foreach/single-tensor Adam (`fused=False`) and its CUDA
kernels round differently (param.addcdiv_ computes var + step * (m / denom)); against those the update agrees to
float32 rounding, not bitwise. It is what `backends.tf.fit` uses; a plain `keras.optimizers.Adam` also trains
the model and its state can be exported/imported the same way (`backends.tf.weights.export_adam`).
"""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="vae_core")
class TorchAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose epsilon is added to sqrt(v_hat), as in `torch.optim.Adam` (no amsgrad), in
    the rounding order of torch's fused CPU Adam when XLA compiles it (`jit_compile=True`, the VAE's default),
    with a float64 learning rate."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="torch_adam", **kwargs):
        if kwargs.pop("amsgrad", False):
            raise ValueError("TorchAdam.amsgrad must be False; got True (AMSGrad is not part of the vae_core recipe)")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=False, name=name, **kwargs)
        self._after_all_grads = None  # set by `apply` for the updates of one step, read by `update_step`
        old = self._learning_rate  # Keras' private slot: it has no public way to replace the variable
        if isinstance(old, keras.Variable) and old.dtype != "float64":  # a float: hold it as torch does, in float64
            with keras.name_scope(self.name, caller=self):
                lr64 = keras.Variable(float(learning_rate), name="learning_rate", dtype="float64", trainable=False,
                                      aggregation="only_first_replica")
            self._untrack_variable(old)
            self._track_variable(lr64)
            self._learning_rate = lr64

    def apply(self, grads, trainable_variables=None):
        """`keras.optimizers.Adam.apply`, with every variable's update made to wait for all the gradients.

        The step size of each update gets + 0.0 * (a sum over all gradients): the same value (exactly, while the
        gradients are finite), but a data dependency. The backward pass reads every kernel but the first, so
        without it XLA cannot prove that a kernel's update comes after the kernel's last read, and copies every
        kernel before each step (extra memory traffic on every step). Tying the gradients themselves (g * 1.0)
        would change how XLA fuses Adam's multiply-adds, and the update would no longer be bit-identical to
        torch's; the step size is a scalar, so tying it does not. A non-finite first element in any gradient makes
        every update non-finite.
        """
        grads = list(grads)
        dense = [g for g in grads if isinstance(g, tf.Tensor)]  # not None, not IndexedSlices
        if dense:
            first = tf.add_n([tf.cast(tf.reduce_sum(tf.reshape(g, [-1])[:1]), tf.float64) for g in dense])  # ()
            self._after_all_grads = 0.0 * first  # () float64
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._after_all_grads = None

    def _clip_gradients(self, grads):
        """Keras' clipping, except that under a tf.distribute strategy with several replicas `global_clipnorm`
        clips the global norm of the gradient the replicas add up to (Keras clips each replica's own gradient before
        the optimizer sums them, which is not torch's clip_grad_norm_ of the batch's gradient). Each replica's
        gradient is scaled by the factor Keras' `clip_by_global_norm` computes from that sum's norm, at the cost of
        one more all-reduce of the gradients per step."""
        context = tf.distribute.get_replica_context()
        if not (self.global_clipnorm and context is not None and context.num_replicas_in_sync > 1):
            return super()._clip_gradients(grads)
        present = [g for g in grads if g is not None]
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in summed]))  # () keras' global_norm
        clip = tf.cast(self.global_clipnorm, norm.dtype)
        scale = clip * tf.minimum(1.0 / norm, 1.0 / clip) + (norm - norm)  # NaN for a non-finite norm, as Keras
        return [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        f64 = tf.float64
        gradient = tf.cast(gradient, dtype)
        t = tf.cast(self.iterations + 1, f64)
        bias1 = 1.0 - tf.pow(tf.constant(self.beta_1, f64), t)  # () float64, like torch's Python float
        bias2_sqrt = tf.sqrt(1.0 - tf.pow(tf.constant(self.beta_2, f64), t))  # ()
        # Keras' private slot lists, read as keras.optimizers.Adam.update_step reads them (no public accessor)
        m_var = self._momentums[self._get_variable_index(variable)]
        v_var = self._velocities[self._get_variable_index(variable)]
        m, v = tf.convert_to_tensor(m_var), tf.convert_to_tensor(v_var)
        c1 = tf.constant(1.0 - self.beta_1, dtype)  # coefficients in the variable's dtype, as torch's scalar_t(...)
        c2 = tf.constant(1.0 - self.beta_2, dtype)
        b2 = tf.constant(self.beta_2, dtype)
        # fma(c1, g - m, m) and fma(c2 * g, g, v * b2): XLA contracts each sum with the product written first
        # (checked bit for bit against torch in tests/parity, test_optimizer_update_agrees_given_the_same_gradients)
        m = c1 * (gradient - m) + m
        v = (c2 * gradient) * gradient + v * b2
        self.assign(m_var, m)
        self.assign(v_var, v)
        denom = tf.sqrt(v) / tf.cast(bias2_sqrt, dtype) + tf.cast(self.epsilon, dtype)
        lr = tf.cast(learning_rate, f64)  # ()
        tie = self._after_all_grads  # see `apply`
        if tie is not None:
            lr = lr + tie
        neg_step = tf.cast(-(lr / bias1), dtype)  # float32(-lr / bc1), as torch's
        self.assign_add(variable, (neg_step * m) / denom)


def make_optimizer(model, config) -> TorchAdam:
    """The optimizer `backends.tf.fit` trains with: `TorchAdam` with the config's learning rate, betas and eps,
    and global-norm clipping to `config.grad_clip_norm` (None: off). `model` is unused: Keras optimizers are built
    on their variables at the first step; it is there to mirror the torch backend's signature."""
    del model
    return TorchAdam(learning_rate=config.learning_rate, beta_1=config.adam_beta1, beta_2=config.adam_beta2,
                     epsilon=config.adam_eps, global_clipnorm=config.grad_clip_norm)
