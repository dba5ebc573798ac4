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
    sign = staticmethod(tf.sign)

    @staticmethod
    def sum_per_sample(x):
        return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)

    @staticmethod
    def matvec(matrix, vector, *, transpose: bool = False):
        return tf.linalg.matvec(matrix, vector, transpose_a=transpose)

    @staticmethod
    def per_sample(values):
        return tf.reshape(values, [-1, 1, 1, 1])

    @staticmethod
    def per_pixel(values):
        """(N, H, W) -> (N, H, W, 1), to broadcast over the channels of NHWC images."""
        return values[..., None]

    @staticmethod
    def channel_mean(images):
        return tf.reduce_mean(images, axis=-1, keepdims=True)

    @staticmethod
    def gather_pixels(images, indices):
        """Output pixel (h, w) of image n is input pixel ``indices[n, h, w]`` (flat over H x W)
        of image n, every channel; the index H*W reads 0."""
        shape = tf.shape(images)
        flat = tf.reshape(images, [shape[0], shape[1] * shape[2], shape[3]])
        flat = tf.pad(flat, [[0, 0], [0, 1], [0, 0]])
        picked = tf.gather(flat, tf.reshape(indices, [shape[0], -1]), batch_dims=1)
        return tf.reshape(picked, shape)
