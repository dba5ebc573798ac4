"""A convolutional GAN in the DCGAN family, sized from the data.

The generator is a Dense layer to a small feature map, then convolution layers (transposed
by default) up to the image, the last one ending in tanh. The discriminator is strided
convolutions, then a Dense logit. With no ``g_layers``/``d_layers`` given, the layers
follow the TensorFlow DCGAN tutorial and scale with the image: 28x28 starts from 7x7,
32x32 from 8x8, 64x64 from 8x8 with one more upsampling.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from gankit import hookimpl, nn
from gankit.data import DataSpec
from gankit.params import Params
from gankit_plugins.blocks import (Activation, NetworkParams, NormOrder, activation, conditional_batchnorm,
                                   discriminator_input, discriminator_logit, generator_condition, norm_act)


class ConvLayer(Params):
    filters: Optional[int] = Field(None, ge=1, description="output channels (the generator's last layer: omit)")
    kernel: int = Field(5, ge=1, le=15)
    stride: int = Field(1, ge=1, le=4)
    transpose: bool = Field(True, description="generator only: ConvTranspose (true) or Conv (false)")
    padding: Literal["same", "valid"] = "same"


class DcganParams(NetworkParams):
    init: str = Field("normal:0.02", pattern=nn.INITS.pattern)
    g_start_channels: int = Field(256, ge=1, description="channels of the first feature map")
    g_layers: Optional[list[ConvLayer]] = Field(None, min_length=1, description="after the Dense; the last makes the image")
    g_bias: bool = False
    g_batchnorm: bool = True
    g_norm_order: NormOrder = Field("norm_act", description="act_norm also reshapes before the first BatchNorm (Keras DCGAN)")
    g_activation: Activation = "leaky_relu"
    d_layers: Optional[list[ConvLayer]] = Field(None, min_length=1)
    d_batchnorm: bool = False
    d_dropout: float = Field(0.3, ge=0, lt=1, description="dropout after each conv layer of D")
    d_final_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before D's Dense layer")


def _downsamplings(size: int) -> int:
    """How many stride-2 layers take ``size`` to a start of at most 8 pixels."""
    count = 0
    while size > 8 and size % 2 == 0:
        size //= 2
        count += 1
    return count


def default_g_layers(spec: DataSpec) -> list[ConvLayer]:
    ups = _downsamplings(min(spec.height, spec.width))
    layers = [ConvLayer(filters=128, kernel=5, stride=1)]
    layers += [ConvLayer(filters=max(128 >> i, 16), kernel=5, stride=2) for i in range(1, ups)]
    return layers + [ConvLayer(kernel=5, stride=2 if ups else 1)]


def default_d_layers(spec: DataSpec) -> list[ConvLayer]:
    downs = max(_downsamplings(min(spec.height, spec.width)), 1)
    return [ConvLayer(filters=64 << i, kernel=5, stride=2, transpose=False) for i in range(downs)]


def _start_size(layers: list[ConvLayer], size: int) -> int:
    factor = 1
    for layer in layers:
        if layer.transpose:
            factor *= layer.stride
        elif layer.stride != 1 or layer.padding != "same":
            raise ValueError("generator Conv layers must have stride 1 and padding 'same'")
    if size % factor:
        raise ValueError(f"the generator's strides multiply to {factor}, which does not divide the image size {size}")
    return size // factor


def build(params: DcganParams, spec: DataSpec) -> nn.Architecture:
    g_spec = params.g_layers or default_g_layers(spec)
    if g_spec[-1].filters is not None and g_spec[-1].filters != spec.channels:
        raise ValueError(f"the generator's last layer makes the image: omit its filters (the data has {spec.channels})")
    height, width = _start_size(g_spec, spec.height), _start_size(g_spec, spec.width)
    act = activation(params.g_activation, params.slope)
    start = (height, width, params.g_start_channels)
    if params.d_spectral_norm and params.d_batchnorm:
        raise ValueError("d_spectral_norm: BatchNorm after a normalised layer undoes its bound (SNGAN's D has none); "
                         "set d_batchnorm = false")
    g_sn, d_sn = params.g_spectral_norm, params.d_spectral_norm
    classes = params.classes(spec)
    cbn = conditional_batchnorm(params, params.g_batchnorm)
    dense = [*generator_condition(params),
             nn.Dense(height * width * params.g_start_channels, bias=params.g_bias, spectral_norm=g_sn)]
    if params.g_norm_order == "norm_act":
        g_layers = [*dense, *norm_act(params, "norm_act", params.g_batchnorm, act, cbn), nn.Reshape(start)]
    else:
        g_layers = [*dense, act, nn.Reshape(start), *norm_act(params, "act_norm", params.g_batchnorm, act, cbn)[1:]]
    for index, layer in enumerate(g_spec):
        last = index == len(g_spec) - 1
        kind = nn.ConvTranspose if layer.transpose else nn.Conv
        conv = kind(spec.channels if last else layer.filters, layer.kernel, layer.stride, layer.padding, params.g_bias, g_sn)
        if last:
            g_layers += [conv, nn.Tanh()]
        elif layer.filters is None:
            raise ValueError(f"g_layers[{index}] needs filters (only the last layer may omit them)")
        else:
            g_layers += [conv, *norm_act(params, params.g_norm_order, params.g_batchnorm, act, cbn)]

    d_layers: list = discriminator_input(params)
    for index, layer in enumerate(params.d_layers or default_d_layers(spec)):
        if layer.filters is None:
            raise ValueError(f"d_layers[{index}] needs filters")
        d_layers.append(nn.Conv(layer.filters, layer.kernel, layer.stride, layer.padding, spectral_norm=d_sn))
        if params.d_batchnorm and index > 0:
            d_layers.append(nn.BatchNorm(params.bn_momentum, params.bn_eps))
        d_layers.append(nn.LeakyReLU(params.slope))
        if params.d_dropout:
            d_layers.append(nn.Dropout(params.d_dropout))
    d_layers.append(nn.Flatten())
    if params.d_final_dropout:
        d_layers.append(nn.Dropout(params.d_final_dropout))
    d_layers += discriminator_logit(params)
    return nn.Architecture(
        latent_dim=params.latent_dim,
        generator=nn.Network((params.latent_dim,), tuple(g_layers), params.init, classes),
        discriminator=nn.Network(spec.shape, tuple(d_layers), params.init, classes),
    )


@hookimpl
def register_architectures(register):
    register("dcgan", build, params=DcganParams,
             description="convolutional G and D (DCGAN family), sized from the data: 28x28, 32x32, 64x64; "
                         "conditional = true for class-conditional")
