"""SNGAN's residual generator and discriminator (Miyato et al., 2018), sized from the data.

The generator maps the noise to a 4x4 (32x32, 64x64) or 7x7 (28x28) feature map, then
residual up-blocks (BatchNorm, ReLU, upsample, 3x3 conv, BatchNorm, ReLU, 3x3 conv; the
shortcut upsamples and fits the channels with a 1x1 conv) double it to the image size.
The discriminator is residual down-blocks (the first one "optimised": no ReLU before its
first conv) to the same size, two blocks at that size, ReLU, a sum over the pixels and a
Dense logit, every weight layer spectrally normalised. Conditional: conditional
BatchNorm in G (``g_condition = "batchnorm"``, SNGAN's) and a projection D.
"""

from __future__ import annotations

from pydantic import Field

from gankit import hookimpl, nn
from gankit.data import DataSpec
from gankit_plugins.blocks import (DiscriminatorCondition, GeneratorCondition, NetworkParams, batchnorm,
                                   conditional_batchnorm, discriminator_input, discriminator_logit,
                                   generator_condition)


class ResnetParams(NetworkParams):
    latent_dim: int = Field(128, ge=1, le=4096)
    init: str = Field("glorot_uniform", pattern=nn.INITS.pattern)
    g_channels: int = Field(128, ge=1, le=2048, description="channels of every generator block")
    d_channels: int = Field(128, ge=1, le=2048, description="channels of every discriminator block")
    d_spectral_norm: bool = True
    g_condition: GeneratorCondition = "batchnorm"
    d_condition: DiscriminatorCondition = "projection"


def upsamplings(spec: DataSpec) -> int:
    """How many doublings reach the image from a start of at most 7 pixels."""
    size, count = min(spec.height, spec.width), 0
    while size > 7 and size % 2 == 0:
        size //= 2
        count += 1
    if count == 0 or spec.height != spec.width:
        raise ValueError(f"resnet needs square images whose side halves to at most 7 (28, 32, 64...), "
                         f"got {spec.height}x{spec.width}")
    return count


def generator_block(params: ResnetParams, channels: int, cbn: bool) -> nn.Residual:
    norm = lambda: batchnorm(params, cbn)  # noqa: E731
    return nn.Residual(
        (norm(), nn.ReLU(), nn.Upsample(), nn.Conv(channels, 3), norm(), nn.ReLU(), nn.Conv(channels, 3)),
        (nn.Upsample(), nn.Conv(channels, 1)))


def discriminator_block(channels: int, *, first: bool, down: bool, fit: bool, sn: bool) -> nn.Residual:
    pool = [nn.AvgPool()] if down else []
    convs = [nn.Conv(channels, 3, spectral_norm=sn), nn.ReLU(), nn.Conv(channels, 3, spectral_norm=sn)]
    layers = (*convs, *pool) if first else (nn.ReLU(), *convs, *pool)
    if first:
        shortcut = (*pool, nn.Conv(channels, 1, spectral_norm=sn))
    else:
        shortcut = (nn.Conv(channels, 1, spectral_norm=sn), *pool) if fit or down else ()
    return nn.Residual(tuple(layers), tuple(shortcut))


def build(params: ResnetParams, spec: DataSpec) -> nn.Architecture:
    ups = upsamplings(spec)
    classes = params.classes(spec)
    cbn = conditional_batchnorm(params)
    start = spec.height >> ups
    ch = params.g_channels
    g_layers = [*generator_condition(params), nn.Dense(start * start * ch, spectral_norm=params.g_spectral_norm),
                nn.Reshape((start, start, ch)), *(generator_block(params, ch, cbn) for _ in range(ups)),
                batchnorm(params), nn.ReLU(), nn.Conv(spec.channels, 3), nn.Tanh()]
    if params.g_spectral_norm:
        g_layers = [_normalised(layer) for layer in g_layers]
    dc, sn = params.d_channels, params.d_spectral_norm
    d_layers = [*discriminator_input(params), discriminator_block(dc, first=True, down=True, fit=True, sn=sn)]
    d_layers += [discriminator_block(dc, first=False, down=True, fit=False, sn=sn) for _ in range(ups - 1)]
    d_layers += [discriminator_block(dc, first=False, down=False, fit=False, sn=sn) for _ in range(2)]
    d_layers += [nn.ReLU(), nn.GlobalSumPool(), *discriminator_logit(params)]
    return nn.Architecture(
        latent_dim=params.latent_dim,
        generator=nn.Network((params.latent_dim,), tuple(g_layers), params.init, classes),
        discriminator=nn.Network(spec.shape, tuple(d_layers), params.init, classes),
    )


def _normalised(layer):
    """``layer`` with every Dense and Conv in it spectrally normalised (g_spectral_norm)."""
    if isinstance(layer, nn.Residual):
        return nn.Residual(tuple(map(_normalised, layer.layers)), tuple(map(_normalised, layer.shortcut)))
    if isinstance(layer, (nn.Dense, nn.Conv)):
        return type(layer)(**{**vars(layer), "spectral_norm": True})
    return layer


@hookimpl
def register_architectures(register):
    register("resnet", build, params=ResnetParams,
             description="SNGAN's residual G and D, sized from the data: 28x28, 32x32, 64x64; "
                         "conditional = true for conditional BatchNorm in G and a projection D")
