"""Pieces the bundled architectures share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gankit import nn
from gankit.params import Params

Activation = Literal["relu", "leaky_relu"]
NormOrder = Literal["norm_act", "act_norm"]
GeneratorCondition = Literal["embedding", "onehot", "batchnorm"]
DiscriminatorCondition = Literal["projection", "onehot"]


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
    conditional: bool = Field(False, description="draw and judge images of a given class (needs labelled data)")
    g_condition: GeneratorCondition = Field(
        "embedding", description="conditional G: the label's embedding or one-hot joined to the noise, "
                                 "or conditional BatchNorm (a scale and shift per class)")
    g_embedding: int = Field(50, ge=1, le=1024, description="g_condition = embedding: the embedding's size")
    d_condition: DiscriminatorCondition = Field(
        "projection", description="conditional D: projection (Miyato & Koyama) or the one-hot joined to its input")

    def classes(self, spec) -> int:
        """The networks' class count: the data's when conditional, else 0."""
        if self.conditional and not spec.classes:
            raise ValueError("conditional = true needs labelled data, and this dataset gives no classes; "
                             "set conditional = false")
        return spec.classes if self.conditional else 0


def generator_condition(params: NetworkParams) -> list:
    """The layer that joins the label to the noise, if the generator is conditioned that way."""
    if not params.conditional or params.g_condition == "batchnorm":
        return []
    return [nn.JoinClass(params.g_embedding if params.g_condition == "embedding" else 0)]


def discriminator_input(params: NetworkParams) -> list:
    return [nn.JoinClass()] if params.conditional and params.d_condition == "onehot" else []


def discriminator_logit(params: NetworkParams) -> list:
    """D's last layer: a projection for a projection discriminator, else Dense(1)."""
    if params.conditional and params.d_condition == "projection":
        return [nn.Projection(spectral_norm=params.d_spectral_norm)]
    return [nn.Dense(1, spectral_norm=params.d_spectral_norm)]


def conditional_batchnorm(params: NetworkParams, has_batchnorm: bool = True) -> bool:
    """Whether G's BatchNorm layers are conditional (``g_condition = "batchnorm"``); a
    ValueError when that is asked of a generator without BatchNorm."""
    chosen = params.conditional and params.g_condition == "batchnorm"
    if chosen and not has_batchnorm:
        raise ValueError("g_condition = batchnorm needs g_batchnorm = true")
    return chosen


def batchnorm(params: NetworkParams, conditional: bool = False):
    kind = nn.ConditionalBatchNorm if conditional else nn.BatchNorm
    return kind(params.bn_momentum, params.bn_eps)


def activation(name: str, slope: float):
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(slope)


def norm_act(params: NetworkParams, order: str, use_batchnorm: bool, act, conditional: bool = False) -> list:
    """BatchNorm (if wanted; conditional BatchNorm if ``conditional``) and activation, in the
    order the recipe asks for."""
    norm = [batchnorm(params, conditional)] if use_batchnorm else []
    return [*norm, act] if order == "norm_act" else [act, *norm]
