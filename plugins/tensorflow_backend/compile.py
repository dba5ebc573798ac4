"""gankit.nn -> Keras layers (NHWC), one Keras layer per gankit layer.

Keras already follows gankit.nn's conventions ('same' padding, BatchNorm momentum), so the
mapping is direct. Every random initialiser and every Dropout gets its own seed, derived
from the network's seed, so that building a network never touches global random state.
"""

from __future__ import annotations

import numpy as np

from gankit import nn, spectral
from gankit_plugins.tensorflow_backend import import_tensorflow
from gankit_plugins.tensorflow_backend.ops import TensorOps

tf = import_tensorflow()
keras = tf.keras
layers = keras.layers


class SpectralNormalised(layers.Layer):
    """A Dense, Conv2D or Conv2DTranspose computing with ``kernel / sigma(kernel)``
    (``gankit.spectral``); the kernel stays the trainable weight, and the power-iteration
    vector ``u`` is a non-trainable one, so checkpoints hold it."""

    def __init__(self, layer, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.layer, self.seed = layer, seed

    def build(self, input_shape):
        self.layer.build(input_shape)
        rows = self.layer.kernel.shape[-2 if isinstance(self.layer, layers.Conv2DTranspose) else -1]
        self.u = self.add_weight(shape=(rows,), initializer=keras.initializers.RandomNormal(0.0, 1.0, self.seed),
                                 trainable=False, name="u")
        self.u.assign(self.u / tf.norm(self.u))

    def matrix(self, kernel):
        """The kernel with one row per output: Keras keeps (in, out), (kh, kw, in, out) and, for
        transposed convolutions, (kh, kw, out, in)."""
        if isinstance(self.layer, layers.Conv2DTranspose):
            kernel = tf.transpose(kernel, [0, 1, 3, 2])
        return tf.transpose(tf.reshape(kernel, [-1, kernel.shape[-1]]))

    def advance(self):
        self.u.assign(spectral.advance(TensorOps, self.matrix(self.layer.kernel), self.u))

    def call(self, inputs):
        layer = self.layer
        kernel = layer.kernel / spectral.sigma(TensorOps, self.matrix(layer.kernel), self.u)
        if isinstance(layer, layers.Dense):
            outputs = tf.matmul(inputs, kernel)
        elif isinstance(layer, layers.Conv2DTranspose):
            outputs = keras.ops.conv_transpose(inputs, kernel, strides=list(layer.strides), padding=layer.padding,
                                               output_padding=layer.output_padding)
        else:
            outputs = keras.ops.conv(inputs, kernel, strides=list(layer.strides), padding=layer.padding)
        return outputs + layer.bias if layer.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def layer_seed(seed: int, index: int) -> int:
    """A seed for layer ``index`` of the network seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def _initialisers(std: float | None, seed: int) -> dict:
    """Seeded initialisers for kernels and BatchNorm scales (biases stay Keras's zeros);
    ``default`` on TensorFlow is Keras's own Glorot-uniform."""
    if std is None:
        return {"kernel": keras.initializers.GlorotUniform(seed), "gamma": keras.initializers.Ones()}
    return {"kernel": keras.initializers.RandomNormal(0.0, std, seed),
            "gamma": keras.initializers.RandomNormal(1.0, std, seed)}


def _layer(layer, std: float | None, seed: int):
    made = _plain_layer(layer, std, seed)
    return SpectralNormalised(made, seed) if getattr(layer, "spectral_norm", False) else made


def _plain_layer(layer, std: float | None, seed: int):
    weights = _initialisers(std, seed)
    if isinstance(layer, nn.Dense):
        return layers.Dense(layer.units, use_bias=layer.bias, kernel_initializer=weights["kernel"])
    if isinstance(layer, (nn.Conv, nn.ConvTranspose)):
        kind = layers.Conv2D if isinstance(layer, nn.Conv) else layers.Conv2DTranspose
        return kind(layer.filters, layer.kernel, layer.stride, layer.padding, use_bias=layer.bias,
                    kernel_initializer=weights["kernel"])
    if isinstance(layer, nn.BatchNorm):
        return layers.BatchNormalization(momentum=layer.momentum, epsilon=layer.eps, gamma_initializer=weights["gamma"])
    if isinstance(layer, nn.Dropout):
        return layers.Dropout(layer.rate, seed=seed)
    if isinstance(layer, nn.LeakyReLU):
        return layers.LeakyReLU(negative_slope=layer.slope)
    if isinstance(layer, nn.Reshape):
        return layers.Reshape(layer.shape)
    if isinstance(layer, nn.Flatten):
        return layers.Flatten()
    activations = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
    return layers.Activation(activations[type(layer)])


def compile_network(network: nn.Network, seed: int, name: str | None = None) -> keras.Sequential:
    """A Keras model computing ``network``; its output shape is checked against the description."""
    model = keras.Sequential(
        [keras.Input(tuple(network.input_shape)),
         *(_layer(layer, network.init_std, layer_seed(seed, index)) for index, layer in enumerate(network.layers))],
        name=name,
    )
    got = tuple(model.output_shape[1:])
    if got != tuple(network.output_shape):
        raise nn.ShapeError(f"compiled network gives {got}, expected {tuple(network.output_shape)}")
    return model


def spectral_layers(model: keras.Sequential) -> list[SpectralNormalised]:
    return [layer for layer in model.layers if isinstance(layer, SpectralNormalised)]


def dropout_seed_states(model: keras.Sequential) -> list:
    """The seed-generator state of each Dropout layer: random state that Keras does not
    put in the model's checkpoint itself."""
    return [layer.seed_generator.state for layer in model.layers if isinstance(layer, layers.Dropout)
            and getattr(layer, "seed_generator", None) is not None]
