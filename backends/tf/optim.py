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

`TorchAdam` overrides `update_step` with torch's formula (moments in torch's operation order, bias corrections
in float64 like torch's Python floats), so its update equals torch.optim.Adam's up to float32 rounding. It is
what `backends.tf.fit` uses; a plain `keras.optimizers.Adam` also trains the model and its state can be
exported/imported the same way (`backends.tf.weights.export_adam`).
"""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="vae_core")
class TorchAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose epsilon is added to sqrt(v_hat), as in `torch.optim.Adam` (no amsgrad)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="torch_adam", **kwargs):
        if kwargs.pop("amsgrad", False):
            raise ValueError("TorchAdam.amsgrad must be False; got True (AMSGrad is not part of the vae_core recipe)")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=False, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        t = tf.cast(self.iterations + 1, tf.float64)
        bias1 = 1.0 - tf.pow(tf.constant(self.beta_1, tf.float64), t)  # () float64, like torch's Python float
        bias2_sqrt = tf.sqrt(1.0 - tf.pow(tf.constant(self.beta_2, tf.float64), t))  # ()
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        # torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign(v, v * self.beta_2 + tf.square(gradient) * (1.0 - self.beta_2))
        # torch: denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps; param.addcdiv_(exp_avg, denom, -lr / bc1)
        denom = tf.sqrt(tf.convert_to_tensor(v)) / tf.cast(bias2_sqrt, dtype) + tf.cast(self.epsilon, dtype)
        step_size = lr / tf.cast(bias1, dtype)
        self.assign_sub(variable, step_size * (tf.convert_to_tensor(m) / denom))
