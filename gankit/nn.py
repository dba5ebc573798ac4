"""The portable network description: one architecture, every backend.

A network is an input shape and a sequence of layers; shapes are (H, W, C) for images and
(N,) for vectors. Backends compile it to their own modules (torch: NCHW, TensorFlow: NHWC)
and must give the same parameter count and output shapes.

Conventions, chosen so that a description means the same thing on every backend:

- ``padding="same"`` follows TensorFlow: output size ``ceil(in / stride)`` for Conv and
  ``in * stride`` for ConvTranspose (backends pad asymmetrically where needed).
- ``BatchNorm.momentum`` is the fraction of the running statistics *kept* at each step
  (Keras's meaning; PyTorch's ``momentum`` is ``1 - momentum``). The running variance
  averages each batch's biased variance, the one the batch is normalised with (Keras's
  choice; PyTorch's own BatchNorm keeps the unbiased ``n / (n - 1)`` one), so sampling
  mode matches training mode on every backend. ``eps`` is added to the variance on both.
- Discriminators end in a logit; the losses apply the sigmoid. A tutorial's
  "Dense(1, sigmoid) + binary cross-entropy" is the same function, computed stably.
- ``init`` names the weight initialisation: ``"default"`` (the framework's own, so it
  differs between backends: PyTorch draws kernels and biases from U(+-1/sqrt(fan_in)),
  Keras Glorot-uniform kernels and zero biases), ``"glorot_uniform"`` (Keras's default:
  Glorot-uniform kernels, zero biases) or ``"normal:STD"`` (DCGAN: N(0, STD) kernels,
  BatchNorm scale N(1, STD), zero biases). The last two draw from the same distributions
  on every backend (not the same numbers: copy weights across for that).
- ``spectral_norm=True`` on Dense, Conv, ConvTranspose or Projection divides the weight by
  its largest singular value (``gankit.spectral`` defines how, once for every backend). It
  adds no trainable parameter: its power-iteration vector is state, saved in checkpoints.
- ``Residual`` is the one layer that is not a plain step: its output is its ``layers``'
  output plus its ``shortcut``'s (no shortcut layers: the input itself), as in the
  residual networks of SNGAN and BigGAN.
- A network with ``classes = K`` takes a class label (0..K-1) with every input, which its
  conditional layers read: ``JoinClass`` (one-hot or embedding joined to the input),
  ``ConditionalBatchNorm`` (a scale and shift per class) and ``Projection`` (the
  projection discriminator's logit: ``dense(x) + <embed(label), x>``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Union

from gankit.errors import GankitError

__all__ = ["Dense", "Conv", "ConvTranspose", "BatchNorm", "Dropout", "LeakyReLU", "ReLU", "Tanh", "Sigmoid",
           "Reshape", "Flatten", "Upsample", "AvgPool", "GlobalSumPool", "Residual", "JoinClass",
           "ConditionalBatchNorm", "Projection", "CONDITIONAL", "Layer", "INITS", "ShapeError", "same_padding",
           "output_shape", "walk", "flatten", "parameter_count", "Network", "Architecture",
           "WEIGHT_LAYERS", "weight_layers", "frozen_layers"]


@dataclass(frozen=True)
class Dense:
    """(F,) -> (``units``,): a fully connected layer, ``x W + b`` (no ``b`` with ``bias=False``);
    ``spectral_norm`` divides W by its largest singular value."""

    units: int
    bias: bool = True
    spectral_norm: bool = False


@dataclass(frozen=True)
class Conv:
    """(H, W, C) -> (H', W', ``filters``): a ``kernel`` x ``kernel`` convolution with ``stride``;
    ``padding`` ``"same"`` (H' = ceil(H / stride), TensorFlow's rule) or ``"valid"`` (no padding)."""

    filters: int
    kernel: int
    stride: int = 1
    padding: str = "same"
    bias: bool = True
    spectral_norm: bool = False


@dataclass(frozen=True)
class ConvTranspose:
    """(H, W, C) -> (H', W', ``filters``): the transposed convolution that upsamples by
    ``stride``; ``padding`` ``"same"`` (H' = H * stride) or ``"valid"`` (H' = H * stride +
    max(kernel - stride, 0))."""

    filters: int
    kernel: int
    stride: int = 1
    padding: str = "same"
    bias: bool = True
    spectral_norm: bool = False


@dataclass(frozen=True)
class BatchNorm:
    """Normalise each channel with the batch's mean and (biased) variance, then a learned
    scale and shift; ``momentum`` is the fraction of the running statistics kept each step
    (Keras's meaning), ``eps`` is added to the variance."""

    momentum: float = 0.9
    eps: float = 1e-5


@dataclass(frozen=True)
class Dropout:
    """Zero each value with probability ``rate`` in training (scaling the rest by
    1 / (1 - rate)); the identity when sampling."""

    rate: float


@dataclass(frozen=True)
class LeakyReLU:
    """``max(x, slope * x)``."""

    slope: float = 0.2


@dataclass(frozen=True)
class ReLU:
    """``max(x, 0)``."""


@dataclass(frozen=True)
class Tanh:
    """``tanh(x)``, into (-1, 1): a generator's last layer."""


@dataclass(frozen=True)
class Sigmoid:
    """``1 / (1 + exp(-x))``, into (0, 1) (not for a discriminator's end: the losses apply it)."""


@dataclass(frozen=True)
class Reshape:
    """Any input -> ``shape``, (H, W, C) or a vector, of the same number of values, taken in
    the backend's own layout (torch channels first, TensorFlow channels last)."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class Flatten:
    """(H, W, C) -> (H * W * C,), the values in the backend's own layout (as ``Reshape``)."""


@dataclass(frozen=True)
class Upsample:
    """Nearest-neighbour upsampling of an (H, W, C) input by ``factor``."""

    factor: int = 2


@dataclass(frozen=True)
class AvgPool:
    """Average pooling over non-overlapping ``size`` x ``size`` windows (a remainder is dropped)."""

    size: int = 2


@dataclass(frozen=True)
class GlobalSumPool:
    """(H, W, C) -> (C,): the sum over every pixel (SNGAN's discriminator)."""


@dataclass(frozen=True)
class Residual:
    """``layers(x) + shortcut(x)``; both must give the same shape. An empty shortcut is the
    identity; a 1x1 Conv, Upsample or AvgPool there fits it to changed shapes."""

    layers: tuple
    shortcut: tuple = ()


@dataclass(frozen=True)
class JoinClass:
    """Join the label to the input: as a one-hot vector (``embedding = 0``) or a learned
    embedding of that size; on an (H, W, C) input, as extra channels at every pixel."""

    embedding: int = 0


@dataclass(frozen=True)
class ConditionalBatchNorm:
    """BatchNorm whose scale and shift are looked up by the label (one of each per class)."""

    momentum: float = 0.9
    eps: float = 1e-5


@dataclass(frozen=True)
class Projection:
    """(F,) features -> (1,) logit ``dense(x) + <embed(label), x>`` (Miyato & Koyama, 2018)."""

    bias: bool = True
    spectral_norm: bool = False


Layer = Union[Dense, Conv, ConvTranspose, BatchNorm, Dropout, LeakyReLU, ReLU, Tanh, Sigmoid, Reshape, Flatten,
              Upsample, AvgPool, GlobalSumPool, Residual, JoinClass, ConditionalBatchNorm, Projection]
CONDITIONAL = (JoinClass, ConditionalBatchNorm, Projection)
INITS = re.compile(r"^(default|glorot_uniform|normal:\d*\.?\d+(e-?\d+)?)$")


class ShapeError(GankitError, ValueError):
    """A layer does not fit the shape it receives."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for a convolution: (before, after) for one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _image(layer, shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{type(layer).__name__} needs an (H, W, C) input, got {shape}")
    return shape


def walk(layers: tuple, shape: tuple[int, ...], classes: int = 0) -> list[tuple[int, ...]]:
    """The output shape of each of ``layers`` in turn (raises ShapeError naming the layer)."""
    shapes = []
    for index, layer in enumerate(layers):
        try:
            shape = output_shape(layer, shape, classes)
        except ShapeError as error:
            raise ShapeError(f"layer {index} ({type(layer).__name__}): {error}") from None
        shapes.append(shape)
    return shapes


def output_shape(layer: Layer, shape: tuple[int, ...], classes: int = 0) -> tuple[int, ...]:
    """The shape ``layer`` gives for an input of ``shape`` (without the batch axis) in a
    network of ``classes`` classes."""
    if isinstance(layer, CONDITIONAL) and not classes:
        raise ShapeError(f"{type(layer).__name__} reads the class label: give the network classes")
    if isinstance(layer, Residual):
        if not layer.layers:
            raise ShapeError("a residual block needs layers")
        main = walk(layer.layers, shape, classes)[-1]
        short = walk(layer.shortcut, shape, classes)[-1] if layer.shortcut else tuple(shape)
        if main != short:
            raise ShapeError(f"its layers give {main} but its shortcut gives {short}; "
                             "fit the shortcut with a 1x1 Conv, Upsample or AvgPool")
        return main
    if isinstance(layer, JoinClass):
        width = layer.embedding or classes
        return (*shape[:-1], shape[-1] + width)
    if isinstance(layer, Projection):
        if len(shape) != 1:
            raise ShapeError(f"Projection needs a vector of features, got {shape}; add GlobalSumPool() or Flatten()")
        return (1,)
    if isinstance(layer, Upsample):
        h, w, c = _image(layer, shape)
        return (h * layer.factor, w * layer.factor, c)
    if isinstance(layer, AvgPool):
        h, w, c = _image(layer, shape)
        if h < layer.size or w < layer.size:
            raise ShapeError(f"cannot pool {shape} in {layer.size}x{layer.size} windows")
        return (h // layer.size, w // layer.size, c)
    if isinstance(layer, GlobalSumPool):
        return (_image(layer, shape)[-1],)
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise ShapeError(f"Dense needs a vector input, got {shape}; add Flatten() first")
        return (layer.units,)
    if isinstance(layer, (Conv, ConvTranspose)):
        if len(shape) != 3:
            raise ShapeError(f"{type(layer).__name__} needs an (H, W, C) input, got {shape}")
        h, w, _ = shape
        if isinstance(layer, Conv):
            if layer.padding == "valid" and layer.kernel > min(h, w):
                raise ShapeError(f"its {layer.kernel}x{layer.kernel} kernel is larger than its {h}x{w} input; "
                                 "use a smaller kernel or padding 'same'")
            if layer.padding == "same":
                return (math.ceil(h / layer.stride), math.ceil(w / layer.stride), layer.filters)
            return ((h - layer.kernel) // layer.stride + 1, (w - layer.kernel) // layer.stride + 1, layer.filters)
        if layer.padding == "same":
            return (h * layer.stride, w * layer.stride, layer.filters)
        grow = max(layer.kernel - layer.stride, 0)
        return (h * layer.stride + grow, w * layer.stride + grow, layer.filters)
    if isinstance(layer, Reshape):
        if math.prod(layer.shape) != math.prod(shape):
            raise ShapeError(f"cannot reshape {shape} to {layer.shape}")
        return tuple(layer.shape)
    if isinstance(layer, Flatten):
        return (math.prod(shape),)
    return shape


def parameter_count(layer: Layer, shape: tuple[int, ...], classes: int = 0) -> int:
    """Trainable parameters of ``layer`` for an input of ``shape``."""
    if isinstance(layer, Residual):
        return sequence_parameters(layer.layers, shape, classes) + sequence_parameters(layer.shortcut, shape, classes)
    if isinstance(layer, JoinClass):
        return classes * layer.embedding
    if isinstance(layer, ConditionalBatchNorm):
        return 2 * classes * shape[-1]
    if isinstance(layer, Projection):
        return shape[0] * (1 + classes) + (1 if layer.bias else 0)
    if isinstance(layer, Dense):
        return shape[0] * layer.units + (layer.units if layer.bias else 0)
    if isinstance(layer, (Conv, ConvTranspose)):
        return layer.kernel * layer.kernel * shape[-1] * layer.filters + (layer.filters if layer.bias else 0)
    if isinstance(layer, BatchNorm):
        return 2 * shape[-1]
    return 0


def sequence_parameters(layers: tuple, shape: tuple[int, ...], classes: int = 0) -> int:
    shapes = [tuple(shape), *walk(layers, shape, classes)]
    return sum(parameter_count(layer, s, classes) for layer, s in zip(layers, shapes))


def flatten(layers: tuple) -> list:
    """Every layer, residual blocks' layers included, depth first (a block before its layers)."""
    found = []
    for layer in layers:
        found.append(layer)
        if isinstance(layer, Residual):
            found += flatten(layer.layers) + flatten(layer.shortcut)
    return found


WEIGHT_LAYERS = (Dense, Conv, ConvTranspose, Projection)
"""The layers ``train.freeze_d`` counts: those with a kernel (a Projection's class
embedding belongs to it). BatchNorm, ConditionalBatchNorm and JoinClass hold weights too,
but are not counted and are never frozen."""


def weight_layers(network: Network) -> list[int]:
    """The positions in ``flatten(network.layers)`` of its weight layers, in order."""
    return [index for index, layer in enumerate(flatten(network.layers)) if isinstance(layer, WEIGHT_LAYERS)]


def frozen_layers(network: Network | None, count: int) -> frozenset[int]:
    """The positions in ``flatten(network.layers)`` of the layers whose trainable weights
    (kernel and bias) ``train.freeze_d = count`` keeps fixed: the first ``count`` weight
    layers. Their BatchNorm statistics and spectral-norm vectors are state and still update."""
    if not count or network is None:
        return frozenset()
    return frozenset(weight_layers(network)[:count])


def _check_batch_size(layers: tuple, shape: tuple[int, ...], classes: int, batch_size: int) -> None:
    shapes = [tuple(shape), *walk(layers, shape, classes)]
    for index, (layer, shape) in enumerate(zip(layers, shapes)):
        if isinstance(layer, Residual):
            _check_batch_size(layer.layers, shape, classes, batch_size)
            _check_batch_size(layer.shortcut, shape, classes, batch_size)
        elif isinstance(layer, (BatchNorm, ConditionalBatchNorm)) and batch_size * math.prod(shape[:-1]) < 2:
            raise ShapeError(f"layer {index} ({type(layer).__name__}) would normalise a single value per channel "
                             f"with batch size {batch_size}; use a batch size of 2 or more")


@dataclass(frozen=True)
class Network:
    """A sequence of layers applied to inputs of ``input_shape`` (and, with ``classes``, to
    a class label 0..classes-1 per input, which its conditional layers read). ``init`` is
    the weight initialisation: ``"default"`` (the framework's own), ``"glorot_uniform"`` or
    ``"normal:STD"`` (DCGAN's), as the module's docstring defines them."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    init: str = "default"
    classes: int = 0

    def __post_init__(self):
        if not INITS.match(self.init):
            raise ValueError(f"unknown init {self.init!r}; use default, glorot_uniform or normal:STD")
        if self.classes and not any(isinstance(layer, CONDITIONAL) for layer in flatten(self.layers)):
            raise ValueError(f"the network takes {self.classes} classes but no layer reads the label")
        self.shapes()

    @property
    def conditional(self) -> bool:
        return self.classes > 0

    def shapes(self) -> list[tuple[int, ...]]:
        """The output shape of every layer, in order (raises ShapeError if one does not fit)."""
        return walk(self.layers, tuple(self.input_shape), self.classes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes()[-1] if self.layers else tuple(self.input_shape)

    def parameter_count(self) -> int:
        return sequence_parameters(self.layers, tuple(self.input_shape), self.classes)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ShapeError where a (conditional) BatchNorm, residual blocks' included, would
        see a single value per channel."""
        _check_batch_size(self.layers, tuple(self.input_shape), self.classes, batch_size)

    @property
    def init_std(self) -> float | None:
        """The standard deviation of a ``normal:STD`` init, else None."""
        return float(self.init.split(":", 1)[1]) if self.init.startswith("normal:") else None


@dataclass(frozen=True)
class Architecture:
    """What an architecture plugin gives: two networks and the latent size.

    ``native`` maps a backend name to a builder ``() -> (generator, discriminator)`` written
    directly in that framework, for networks gankit.nn cannot describe; a backend uses it
    instead of the description (which may then be None). On ``torch``: two
    ``torch.nn.Module``, G from (N, latent_dim) to (N, C, H, W) images in [-1, 1], D from
    those to (N, 1) logits; on ``tensorflow``: two Keras models, the same in (N, H, W, C).
    The backend seeds its framework before calling the builder.
    """

    latent_dim: int
    generator: Network | None
    discriminator: Network | None
    native: dict = field(default_factory=dict)

    @property
    def classes(self) -> int:
        """How many classes a conditional architecture's generator draws (0: unconditional)."""
        return self.generator.classes if self.generator is not None else 0

    def check(self, image_shape: tuple[int, ...], batch_size: int) -> None:
        """Raise ShapeError unless G makes images of ``image_shape`` from the latent vector
        and D turns them into one logit, with every BatchNorm fit for ``batch_size``."""
        if self.generator is None or self.discriminator is None:
            return
        if tuple(self.generator.input_shape) != (self.latent_dim,):
            raise ShapeError(f"the generator takes {self.generator.input_shape}, "
                             f"not the latent size ({self.latent_dim},)")
        if self.generator.output_shape != tuple(image_shape):
            raise ShapeError(f"the generator makes {self.generator.output_shape} images but the data is "
                             f"{tuple(image_shape)} (H, W, C); check its layers' strides and padding")
        if tuple(self.discriminator.input_shape) != tuple(image_shape):
            raise ShapeError(f"the discriminator takes {self.discriminator.input_shape}, "
                             f"not the data's {tuple(image_shape)}")
        if self.discriminator.output_shape != (1,):
            raise ShapeError(f"the discriminator must end in one logit, not {self.discriminator.output_shape}")
        for role, network in (("generator", self.generator), ("discriminator", self.discriminator)):
            try:
                network.check_batch_size(batch_size)
            except ShapeError as error:
                raise ShapeError(f"{role} {error}") from None
