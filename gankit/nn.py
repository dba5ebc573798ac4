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
- ``spectral_norm=True`` on Dense, Conv or ConvTranspose divides the weight by its largest
  singular value (``gankit.spectral`` defines how, once for every backend). It adds no
  trainable parameter: its power-iteration vector is state, saved in checkpoints.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Union

__all__ = ["Dense", "Conv", "ConvTranspose", "BatchNorm", "Dropout", "LeakyReLU", "ReLU", "Tanh", "Sigmoid",
           "Reshape", "Flatten", "Layer", "INITS", "ShapeError", "same_padding", "output_shape",
           "parameter_count", "Network", "Architecture"]


@dataclass(frozen=True)
class Dense:
    units: int
    bias: bool = True
    spectral_norm: bool = False


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: int
    stride: int = 1
    padding: str = "same"
    bias: bool = True
    spectral_norm: bool = False


@dataclass(frozen=True)
class ConvTranspose:
    filters: int
    kernel: int
    stride: int = 1
    padding: str = "same"
    bias: bool = True
    spectral_norm: bool = False


@dataclass(frozen=True)
class BatchNorm:
    momentum: float = 0.9
    eps: float = 1e-5


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class LeakyReLU:
    slope: float = 0.2


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class Tanh:
    pass


@dataclass(frozen=True)
class Sigmoid:
    pass


@dataclass(frozen=True)
class Reshape:
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Flatten:
    pass


Layer = Union[Dense, Conv, ConvTranspose, BatchNorm, Dropout, LeakyReLU, ReLU, Tanh, Sigmoid, Reshape, Flatten]
INITS = re.compile(r"^(default|glorot_uniform|normal:\d*\.?\d+(e-?\d+)?)$")


class ShapeError(ValueError):
    """A layer does not fit the shape it receives."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for a convolution: (before, after) for one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape ``layer`` gives for an input of ``shape`` (without the batch axis)."""
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


def parameter_count(layer: Layer, shape: tuple[int, ...]) -> int:
    """Trainable parameters of ``layer`` for an input of ``shape``."""
    if isinstance(layer, Dense):
        return shape[0] * layer.units + (layer.units if layer.bias else 0)
    if isinstance(layer, (Conv, ConvTranspose)):
        return layer.kernel * layer.kernel * shape[-1] * layer.filters + (layer.filters if layer.bias else 0)
    if isinstance(layer, BatchNorm):
        return 2 * shape[-1]
    return 0


@dataclass(frozen=True)
class Network:
    """A sequence of layers applied to inputs of ``input_shape``."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    init: str = "default"

    def __post_init__(self):
        if not INITS.match(self.init):
            raise ValueError(f"unknown init {self.init!r}; use default, glorot_uniform or normal:STD")
        self.shapes()

    def shapes(self) -> list[tuple[int, ...]]:
        """The output shape of every layer, in order (raises ShapeError if one does not fit)."""
        shapes, shape = [], tuple(self.input_shape)
        for index, layer in enumerate(self.layers):
            try:
                shape = output_shape(layer, shape)
            except ShapeError as error:
                raise ShapeError(f"layer {index} ({type(layer).__name__}): {error}") from None
            shapes.append(shape)
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes()[-1] if self.layers else tuple(self.input_shape)

    def parameter_count(self) -> int:
        shapes = [tuple(self.input_shape), *self.shapes()]
        return sum(parameter_count(layer, shape) for layer, shape in zip(self.layers, shapes))

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ShapeError where a BatchNorm would see a single value per channel."""
        shapes = [tuple(self.input_shape), *self.shapes()]
        for index, (layer, shape) in enumerate(zip(self.layers, shapes)):
            if isinstance(layer, BatchNorm) and batch_size * math.prod(shape[:-1]) < 2:
                raise ShapeError(f"layer {index} (BatchNorm) would normalise a single value per channel "
                                 f"with batch size {batch_size}; use a batch size of 2 or more")

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
