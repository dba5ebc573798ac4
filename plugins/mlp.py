"""A fully connected GAN: the PyTorch tutorial's and the Keras simple GAN's MLPs, and
anything between, from the layer sizes a recipe gives."""

from __future__ import annotations

import math

from pydantic import Field

from gankit import hookimpl, nn
from gankit.data import DataSpec
from gankit_plugins.blocks import (Activation, NetworkParams, NormOrder, activation, conditional_batchnorm,
                                   discriminator_input, discriminator_logit, generator_condition, norm_act)


class MlpParams(NetworkParams):
    g_hidden: list[int] = Field(default_factory=lambda: [256, 512, 1024], min_length=1)
    g_activation: Activation = "leaky_relu"
    g_batchnorm: bool = True
    g_norm_order: NormOrder = "norm_act"
    d_hidden: list[int] = Field(default_factory=lambda: [512, 256], min_length=1)
    d_dropout: float = Field(0.3, ge=0, lt=1, description="dropout after each hidden layer of D")


def build(params: MlpParams, spec: DataSpec) -> nn.Architecture:
    pixels = math.prod(spec.shape)
    classes = params.classes(spec)
    cbn = conditional_batchnorm(params, params.g_batchnorm)
    g_layers: list = generator_condition(params)
    g_sn, d_sn = params.g_spectral_norm, params.d_spectral_norm
    for units in params.g_hidden:
        g_layers += [nn.Dense(units, spectral_norm=g_sn), *norm_act(params, params.g_norm_order, params.g_batchnorm,
                                                activation(params.g_activation, params.slope), cbn)]
    g_layers += [nn.Dense(pixels, spectral_norm=g_sn), nn.Tanh(), nn.Reshape(spec.shape)]
    d_layers: list = [nn.Flatten(), *discriminator_input(params)]
    for units in params.d_hidden:
        d_layers += [nn.Dense(units, spectral_norm=d_sn), nn.LeakyReLU(params.slope)]
        d_layers += [nn.Dropout(params.d_dropout)] if params.d_dropout else []
    d_layers += discriminator_logit(params)
    return nn.Architecture(
        latent_dim=params.latent_dim,
        generator=nn.Network((params.latent_dim,), tuple(g_layers), params.init, classes),
        discriminator=nn.Network(spec.shape, tuple(d_layers), params.init, classes),
    )


@hookimpl
def register_architectures(register):
    register("mlp", build, params=MlpParams,
             description="fully connected G and D (the classic MLP GAN), any image size; conditional = true "
                         "for class-conditional")
