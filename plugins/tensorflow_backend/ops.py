"""The stateless primitives of ``gankit.backend.Primitives`` on TensorFlow tensors."""

from __future__ import annotations

from gankit_plugins.tensorflow_backend import import_tensorflow

tf = import_tensorflow()


class TensorOps:
    """Elementwise and reduction primitives; the trainer adds the stateful ones."""

    stop_gradient = staticmethod(tf.stop_gradient)
    mean = staticmethod(tf.reduce_mean)
    sum = staticmethod(tf.reduce_sum)
    sqrt = staticmethod(tf.sqrt)
    softplus = staticmethod(tf.nn.softplus)
    relu = staticmethod(tf.nn.relu)
    sigmoid = staticmethod(tf.sigmoid)

    @staticmethod
    def sum_per_sample(x):
        return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)

    @staticmethod
    def matvec(matrix, vector, *, transpose: bool = False):
        return tf.linalg.matvec(matrix, vector, transpose_a=transpose)
