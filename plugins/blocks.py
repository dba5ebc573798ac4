"""Pieces the bundled architectures share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gankit import nn
from gankit.params import Params

Activation = Literal["relu", "leaky_relu"]
NormOrder = Literal["norm_act", "act_norm"]


class NetworkParams(Params):
    """Parameters every bundled architecture has."""

    latent_dim: int = Field(100, ge=1, le=4096, description="size of the noise vector")
    slope: float = Field(0.2, ge=0, lt=1, description="LeakyReLU negative slope (Keras's default is 0.3)")
    bn_momentum: float = Field(0.9, gt=0, lt=1, description="BatchNorm: fraction of running stats kept (Keras meaning)")
    bn_eps: float = Field(1e-5, gt=0, lt=1)
    init: str = Field("default", pattern=nn.INITS.pattern,
                      description="default, glorot_uniform (Keras) or normal:STD (DCGAN)")
    g_spectral_norm: bool = Field(False, description="spectral normalisation of G's weight layers (SAGAN)")
    d_spectral_norm: bool = Field(False, description="spectral normalisation of D's weight layers (SNGAN)")


def activation(name: str, slope: float):
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(slope)


def norm_act(params: NetworkParams, order: str, batchnorm: bool, act) -> list:
    """BatchNorm (if wanted) and activation, in the order the recipe asks for."""
    norm = [nn.BatchNorm(params.bn_momentum, params.bn_eps)] if batchnorm else []
    return [*norm, act] if order == "norm_act" else [act, *norm]
