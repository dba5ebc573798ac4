"""Adam and RMSprop as gankit defines them, which is PyTorch's arithmetic, so that the same
``[train]`` table updates the weights alike on both backends.

Keras computes the same moments but puts epsilon elsewhere. Keras's Adam adds epsilon to
``sqrt(v)`` before bias correction (the "epsilon hat" of the Adam paper), which equals
PyTorch's epsilon divided by ``sqrt(1 - beta_2 ** t)``: about 30 times larger at the first
step, fading over a few thousand. Keras's RMSprop adds epsilon *inside* the square root,
so with ``epsilon = 1e-7`` every gradient below about 3e-4 takes a smaller step than on
PyTorch (ten times smaller at 1e-5).

A gradient through ``tf.gather`` (a class embedding's) arrives as ``IndexedSlices``, one
slice per lookup; Keras's ops square each slice on its own, so a row looked up twice would
get ``g1^2 + g2^2`` instead of ``(g1 + g2)^2``. Both optimizers make such a gradient dense first.
"""

from __future__ import annotations

from gankit_plugins.tensorflow_backend import import_tensorflow

tf = import_tensorflow()
keras = tf.keras
ops = keras.ops


def _dense(gradient):
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class Adam(keras.optimizers.Adam):
    """``torch.optim.Adam``: ``w -= lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)``."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = ops.cast(learning_rate, dtype), ops.cast(_dense(gradient), dtype)
        step = ops.cast(self.iterations + 1, dtype)
        correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        denominator = ops.sqrt(v) / ops.sqrt(correction_2) + self.epsilon
        self.assign_sub(variable, (lr / correction_1) * m / denominator)


class RMSprop(keras.optimizers.RMSprop):
    """``torch.optim.RMSprop`` (not centered, no momentum): ``w -= lr * g / (sqrt(v) + eps)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.centered or self.momentum:
            raise ValueError("gankit's RMSprop has neither momentum nor centering")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = ops.cast(learning_rate, dtype), ops.cast(_dense(gradient), dtype)
        velocity = self._velocities[self._get_variable_index(variable)]
        self.assign(velocity, self.rho * velocity + (1 - self.rho) * ops.square(gradient))
        self.assign_sub(variable, lr * gradient / (ops.sqrt(velocity) + self.epsilon))
