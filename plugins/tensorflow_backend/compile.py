"""gankit.nn -> a functional Keras model (NHWC), one Keras layer per gankit layer.

Keras already follows gankit.nn's conventions ('same' padding, BatchNorm momentum), so the
mapping is direct. A residual block is its layers applied in the graph, joined by an Add;
a conditional network has a second input, the int32 labels (or, compiled ``mixed``, float
class weights (N, classes) that mix the classes' embeddings). Every random initialiser and
every Dropout gets its own seed, derived from the network's seed and the layer's place
(depth first), so that building a network never touches global random state.
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


class GlobalSumPool(layers.Layer):
    def call(self, inputs):
        return tf.reduce_sum(inputs, axis=[1, 2])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def _rows(table, labels):
    """Each label's row of the table; float class weights (N, classes) mix the rows."""
    return tf.matmul(tf.cast(labels, table.dtype), table) if labels.dtype.is_floating else tf.gather(table, labels)


def _label_channels(code, like):
    """(N, K) -> (N, H, W, K) to join an image, or (N, K) as it is to join a vector."""
    if len(like.shape) != 4:
        return code
    shape = tf.shape(like)
    return tf.broadcast_to(code[:, None, None, :], [shape[0], shape[1], shape[2], tf.shape(code)[1]])


class JoinClass(layers.Layer):
    """Called on ``[x, labels]``."""

    def __init__(self, classes: int, embedding: int, initializer, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.embedding, self.initializer = classes, embedding, initializer

    def build(self, input_shape):
        if self.embedding:
            self.table = self.add_weight(shape=(self.classes, self.embedding), initializer=self.initializer, name="embedding")

    def call(self, inputs):
        x, labels = inputs
        if self.embedding:
            code = _rows(self.table, labels)
        else:
            code = tf.cast(labels, x.dtype) if labels.dtype.is_floating else tf.one_hot(labels, self.classes, dtype=x.dtype)
        return tf.concat([x, _label_channels(code, x)], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (*shape[:-1], shape[-1] + (self.embedding or self.classes))


class ConditionalBatchNorm(layers.Layer):
    """BatchNorm without its own scale and shift; those come from one row per class."""

    def __init__(self, layer: nn.ConditionalBatchNorm, classes: int, gamma, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.gamma = classes, gamma
        self.norm = layers.BatchNormalization(momentum=layer.momentum, epsilon=layer.eps, center=False, scale=False)

    def build(self, input_shape):
        channels = input_shape[0][-1]
        self.norm.build(input_shape[0])
        self.scale = self.add_weight(shape=(self.classes, channels), initializer=self.gamma, name="scale")
        self.shift = self.add_weight(shape=(self.classes, channels), initializer="zeros", name="shift")

    def call(self, inputs, training=None):
        x, labels = inputs
        scale, shift = _rows(self.scale, labels), _rows(self.shift, labels)
        if len(x.shape) == 4:
            scale, shift = scale[:, None, None, :], shift[:, None, None, :]
        return self.norm(x, training=training) * scale + shift

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class Projection(layers.Layer):
    """``dense(x) + <embedding[label], x>``, called on ``[x, labels]``."""

    def __init__(self, dense, classes: int, initializer, **kwargs):
        super().__init__(**kwargs)
        self.dense, self.classes, self.initializer = dense, classes, initializer

    def build(self, input_shape):
        self.dense.build(input_shape[0])
        self.embedding = self.add_weight(shape=(self.classes, input_shape[0][-1]), initializer=self.initializer,
                                         name="embedding")

    def call(self, inputs):
        x, labels = inputs
        return self.dense(x) + tf.reduce_sum(_rows(self.embedding, labels) * x, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)


def _layer(layer, std: float | None, seed: int, classes: int = 0):
    if isinstance(layer, nn.CONDITIONAL):
        return _conditional_layer(layer, std, seed, classes)
    made = _plain_layer(layer, std, seed)
    return SpectralNormalised(made, seed) if getattr(layer, "spectral_norm", False) else made


def _conditional_layer(layer, std: float | None, seed: int, classes: int):
    """Label embeddings: N(0, STD) under ``normal:STD`` (scales N(1, STD)), else Glorot-uniform (scales 1)."""
    weights = _initialisers(std, seed)
    if isinstance(layer, nn.ConditionalBatchNorm):
        return ConditionalBatchNorm(layer, classes, weights["gamma"])
    embedding = weights["kernel"] if std is not None else keras.initializers.GlorotUniform(seed)
    if isinstance(layer, nn.JoinClass):
        return JoinClass(classes, layer.embedding, embedding)
    dense = _layer(nn.Dense(1, layer.bias, layer.spectral_norm), std, layer_seed(seed, 0))
    return Projection(dense, classes, embedding)


def _plain_layer(layer, std: float | None, seed: int):
    weights = _initialisers(std, seed)
    if isinstance(layer, nn.Upsample):
        return layers.UpSampling2D(layer.factor, interpolation="nearest")
    if isinstance(layer, nn.AvgPool):
        return layers.AveragePooling2D(layer.size)
    if isinstance(layer, nn.GlobalSumPool):
        return GlobalSumPool()
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


def build_graph(network: nn.Network, seed: int, *, placed: bool = False, mixed: bool = False):
    """``(inputs, outputs)``: the Keras inputs (the image or vector, then the labels of a
    conditional network: class weights when ``mixed``) and, for each of the network's top-level layers, its output and
    the Keras layer that made it (for a residual block, the Add). With ``placed``, also
    every Keras layer in ``nn.flatten`` order."""
    image = keras.Input(tuple(network.input_shape))
    labels = None
    if network.conditional:
        labels = keras.Input((network.classes,), dtype="float32") if mixed else keras.Input((), dtype="int32")
    every: list = []

    def apply(layer_list, x):
        made = []
        for layer in layer_list:
            place = len(every)
            every.append(None)
            if isinstance(layer, nn.Residual):
                main, short = apply(layer.layers, x), apply(layer.shortcut, x)
                keras_layer = layers.Add()
                x = keras_layer([main[-1][0], short[-1][0] if short else x])
            else:
                keras_layer = _layer(layer, network.init_std, layer_seed(seed, place), network.classes)
                x = keras_layer([x, labels]) if isinstance(layer, nn.CONDITIONAL) else keras_layer(x)
            every[place] = keras_layer
            made.append((x, keras_layer))
        return made

    outputs = apply(network.layers, image)
    inputs = [image, labels] if labels is not None else [image]
    return (inputs, outputs, every) if placed else (inputs, outputs)


def compile_network(network: nn.Network, seed: int, name: str | None = None,
                    frozen: frozenset[int] = frozenset(), *, mixed: bool = False) -> keras.Model:
    """A Keras model computing ``network`` (``model(x)``, or ``model([x, labels])`` for a
    conditional network; ``mixed``: float class weights (N, classes) for labels); its output
    shape is checked against the description. ``frozen``: the layers (``nn.flatten``
    positions) whose weights do not train."""
    inputs, outputs, placed = build_graph(network, seed, placed=True, mixed=mixed)
    for index in frozen:
        placed[index].trainable = False
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs[-1][0] if outputs else inputs[0], name=name)
    got = tuple(model.output_shape[1:])
    if got != tuple(network.output_shape):
        raise nn.ShapeError(f"compiled network gives {got}, expected {tuple(network.output_shape)}")
    return model


def _all_layers(model) -> list:
    return list(model._flatten_layers(include_self=False, recursive=True))


def spectral_layers(model: keras.Model) -> list[SpectralNormalised]:
    return [layer for layer in _all_layers(model) if isinstance(layer, SpectralNormalised)]


def dropout_seed_states(model: keras.Model) -> list:
    """The seed-generator state of each Dropout layer: random state that Keras does not
    put in the model's checkpoint itself."""
    return [layer.seed_generator.state for layer in _all_layers(model) if isinstance(layer, layers.Dropout)
            and getattr(layer, "seed_generator", None) is not None]
