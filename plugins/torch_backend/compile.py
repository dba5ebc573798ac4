"""gankit.nn -> torch.nn (NCHW)."""

from __future__ import annotations

import torch
from torch import nn as tnn
from torch.nn.utils import parametrize

from gankit import nn, spectral
from gankit_plugins.torch_backend.distributed import SyncedStatistics
from gankit_plugins.torch_backend.ops import TensorOps


class Reshape(tnn.Module):
    """Reshape to a gankit (H, W, C) or (N,) shape, in torch's channels-first layout."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _conv(layer: nn.Conv, shape) -> tnn.Module:
    h, w, channels = shape
    conv = lambda padding: tnn.Conv2d(channels, layer.filters, layer.kernel, layer.stride, padding, bias=layer.bias)  # noqa: E731
    if layer.padding == "valid":
        return conv(0)
    top, bottom = nn.same_padding(h, layer.kernel, layer.stride)
    left, right = nn.same_padding(w, layer.kernel, layer.stride)
    if top == bottom and left == right:
        return conv((top, left))
    return tnn.Sequential(tnn.ZeroPad2d((left, right, top, bottom)), conv(0))


class CropEnd(tnn.Module):
    """Drop the last ``pixels`` rows and columns: TensorFlow's 'same' transposed convolution
    crops the odd pixel at the end, where torch's ``padding`` can only crop evenly."""

    def __init__(self, pixels: int):
        super().__init__()
        self.pixels = pixels

    def forward(self, x):
        # Kept in the input's memory layout: BatchNorm's backward pass on a cropped
        # channels-last view takes a slow path, four times slower than this copy.
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return x[..., : -self.pixels, : -self.pixels].contiguous(memory_format=layout)


def _conv_transpose(layer: nn.ConvTranspose, shape) -> tnn.Module:
    k, s = layer.kernel, layer.stride
    make = lambda padding, extra=0: tnn.ConvTranspose2d(  # noqa: E731
        shape[-1], layer.filters, k, s, padding, output_padding=extra, bias=layer.bias)
    if layer.padding == "valid" or k < s:
        return make(0, max(s - k, 0))
    before, after = (k - s) // 2, (k - s) - (k - s) // 2
    return make(before) if before == after else tnn.Sequential(make(before), CropEnd(after - before))


class _BiasedRunningVariance:
    """BatchNorm whose running variance averages the batches' biased variance, the one it
    normalises with, as Keras's does (gankit.nn's convention). torch's own averages the
    unbiased ``n / (n - 1)`` estimate, which for a batch of 64 vectors makes sampling
    mode divide by a standard deviation 0.8% larger than training mode does."""

    def forward(self, x):
        if not self.training or not self.track_running_stats:
            return super().forward(x)
        before = self.running_var.clone()
        out = super().forward(x)
        count = x.numel() // x.shape[1]
        # torch added momentum * var * n / (n - 1); take momentum * var / (n - 1) back, on
        # .data because autograd keeps the running variance among batch_norm's inputs.
        running = self.running_var.data
        running.sub_((running - (1 - self.momentum) * before) / count)
        return out


class BatchNorm1d(_BiasedRunningVariance, tnn.BatchNorm1d):
    pass


class BatchNorm2d(_BiasedRunningVariance, tnn.BatchNorm2d):
    pass


class SyncedBatchNorm1d(SyncedStatistics, BatchNorm1d):
    pass


class SyncedBatchNorm2d(SyncedStatistics, BatchNorm2d):
    pass


class SpectralNorm(tnn.Module):
    """A parametrization: the weight a layer computes with is ``W / sigma(W)`` (``gankit.spectral``),
    with the power-iteration vector ``u`` a buffer, so checkpoints hold it."""

    def __init__(self, weight: torch.Tensor, transposed: bool):
        super().__init__()
        self.transposed = transposed
        rows = weight.shape[1] if transposed else weight.shape[0]
        u = torch.randn(rows)
        self.register_buffer("u", u / u.norm())

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight with one row per output: torch keeps ConvTranspose2d's as (in, out, kh, kw)."""
        rows = weight.transpose(0, 1) if self.transposed else weight
        return rows.reshape(rows.shape[0], -1)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / spectral.sigma(TensorOps, self.matrix(weight), self.u)


@torch.no_grad()
def advance_spectral_norm(model: tnn.Module) -> None:
    """One power iteration for every spectral-normalised layer of ``model``."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            original = module.parametrizations.weight.original
            for parametrization in module.parametrizations.weight:
                if isinstance(parametrization, SpectralNorm):
                    parametrization.u.copy_(spectral.advance(TensorOps, parametrization.matrix(original), parametrization.u))


def _weighted(module: tnn.Module) -> tnn.Module:
    """The Linear/Conv module inside what ``_module`` made (padding or cropping may wrap it)."""
    return next(m for m in module.modules() if isinstance(m, (tnn.Linear, tnn.Conv2d, tnn.ConvTranspose2d)))


def _module(layer, shape, synced: bool = False) -> tnn.Module:
    if isinstance(layer, nn.Dense):
        return tnn.Linear(shape[0], layer.units, bias=layer.bias)
    if isinstance(layer, nn.Conv):
        return _conv(layer, shape)
    if isinstance(layer, nn.ConvTranspose):
        return _conv_transpose(layer, shape)
    if isinstance(layer, nn.BatchNorm):
        norm = {(False, 1): BatchNorm1d, (False, 3): BatchNorm2d,
                (True, 1): SyncedBatchNorm1d, (True, 3): SyncedBatchNorm2d}[synced, len(shape)]
        return norm(shape[-1], eps=layer.eps, momentum=1 - layer.momentum)
    if isinstance(layer, nn.Dropout):
        return tnn.Dropout(layer.rate)
    if isinstance(layer, nn.LeakyReLU):
        return tnn.LeakyReLU(layer.slope)
    if isinstance(layer, nn.Reshape):
        return Reshape(layer.shape)
    simple = {nn.ReLU: tnn.ReLU, nn.Tanh: tnn.Tanh, nn.Sigmoid: tnn.Sigmoid, nn.Flatten: tnn.Flatten}
    return simple[type(layer)]()


def initialise(module: tnn.Module, init: str) -> None:
    if init == "default":
        return
    std = float(init.split(":", 1)[1]) if init.startswith("normal:") else None
    for sub in module.modules():
        if isinstance(sub, (tnn.Linear, tnn.Conv2d, tnn.ConvTranspose2d)):
            if std is None:
                tnn.init.xavier_uniform_(sub.weight)
            else:
                tnn.init.normal_(sub.weight, 0.0, std)
            if sub.bias is not None:
                tnn.init.zeros_(sub.bias)
        elif isinstance(sub, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
            if std is None:
                tnn.init.ones_(sub.weight)
            else:
                tnn.init.normal_(sub.weight, 1.0, std)
            tnn.init.zeros_(sub.bias)


def compile_network(network: nn.Network, *, sync_batchnorm: bool = False) -> tnn.Sequential:
    """A torch module computing ``network``; the output shape is checked against the description.
    ``sync_batchnorm``: BatchNorm with the statistics of the whole batch of a distributed run."""
    shapes = [tuple(network.input_shape), *network.shapes()]
    model = tnn.Sequential(*(_module(layer, shape, sync_batchnorm) for layer, shape in zip(network.layers, shapes)))
    initialise(model, network.init)
    for layer, module in zip(network.layers, model):
        if getattr(layer, "spectral_norm", False):
            weighted = _weighted(module)
            parametrize.register_parametrization(
                weighted, "weight", SpectralNorm(weighted.weight, isinstance(weighted, tnn.ConvTranspose2d)))
    with torch.no_grad():
        probe = torch.zeros(2, *_torch_shape(network.input_shape))
        was_training = model.training
        model.eval()
        got = tuple(model(probe).shape[1:])
        model.train(was_training)
    if got != _torch_shape(network.output_shape):
        raise nn.ShapeError(f"compiled network gives {got}, expected {_torch_shape(network.output_shape)}")
    return model


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
