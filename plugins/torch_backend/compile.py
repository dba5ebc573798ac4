"""gankit.nn -> torch.nn (NCHW)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class Dropout(tnn.Dropout):
    """Inverted dropout whose keep-mask comes from ``rand_like``: on CPU torch's own dropout
    draws its Bernoulli mask element by element, about twice the time of the forward and
    backward pass here (10% of the TensorFlow tutorial's DCGAN step)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


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

    def advance(self, weight: torch.Tensor) -> None:
        """One power iteration of ``u`` (called under no_grad)."""
        self.u.copy_(spectral.advance(TensorOps, self.matrix(weight), self.u))


def spectral_norms(model: tnn.Module) -> list[tuple[torch.Tensor, SpectralNorm]]:
    """Every spectral-normalised layer of ``model``: its unnormalised weight and its
    parametrization, found once so that a step with none walks no modules."""
    return [(module.parametrizations.weight.original, parametrization) for module in model.modules()
            if parametrize.is_parametrized(module, "weight")
            for parametrization in module.parametrizations.weight if isinstance(parametrization, SpectralNorm)]


class Conditional(tnn.Module):
    """A module that reads the class labels: ``forward(x, labels)``."""


class Sequence(tnn.Sequential):
    """The compiled layers, in order; conditional ones also get the labels."""

    def forward(self, x, labels=None):
        for module in self:
            x = module(x, labels) if isinstance(module, Conditional) else module(x)
        return x


class Residual(Conditional):
    def __init__(self, main: Sequence, shortcut: Sequence):
        super().__init__()
        self.main, self.shortcut = main, shortcut

    def forward(self, x, labels=None):
        return self.main(x, labels) + self.shortcut(x, labels)


def _rows(table: tnn.Embedding, labels: torch.Tensor) -> torch.Tensor:
    """Each label's row of the table; float class weights (N, classes) mix the rows."""
    return labels.to(table.weight.dtype) @ table.weight if labels.is_floating_point() else table(labels)


def _label_channels(code: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N, K) -> (N, K, H, W) to join an image, or (N, K) as it is to join a vector."""
    return code[:, :, None, None].expand(-1, -1, *like.shape[2:]) if like.dim() == 4 else code


class JoinClass(Conditional):
    def __init__(self, classes: int, embedding: int):
        super().__init__()
        self.classes = classes
        self.embedding = tnn.Embedding(classes, embedding) if embedding else None
        if self.embedding is not None:
            tnn.init.xavier_uniform_(self.embedding.weight)

    def forward(self, x, labels):
        if self.embedding is not None:
            code = _rows(self.embedding, labels)
        else:
            code = (labels if labels.is_floating_point() else F.one_hot(labels, self.classes)).to(x.dtype)
        return torch.cat([x, _label_channels(code, x)], 1)


class ConditionalBatchNorm(Conditional):
    """BatchNorm without its own scale and shift; those come from one row per class."""

    def __init__(self, classes: int, norm: tnn.Module):
        super().__init__()
        channels = norm.num_features
        self.norm = norm
        self.scale, self.shift = tnn.Embedding(classes, channels), tnn.Embedding(classes, channels)
        tnn.init.ones_(self.scale.weight)
        tnn.init.zeros_(self.shift.weight)

    def forward(self, x, labels):
        scale, shift = _rows(self.scale, labels), _rows(self.shift, labels)
        if x.dim() == 4:
            scale, shift = scale[:, :, None, None], shift[:, :, None, None]
        return self.norm(x) * scale + shift


class Projection(Conditional):
    def __init__(self, layer: nn.Projection, classes: int, features: int):
        super().__init__()
        self.linear = tnn.Linear(features, 1, bias=layer.bias)
        self.embedding = tnn.Embedding(classes, features)
        tnn.init.xavier_uniform_(self.embedding.weight)

    def forward(self, x, labels):
        return self.linear(x) + (_rows(self.embedding, labels) * x).sum(1, keepdim=True)


class GlobalSumPool(tnn.Module):
    def forward(self, x):
        return x.sum((2, 3))


def _weighted(module: tnn.Module) -> tnn.Module:
    """The Linear/Conv module inside what ``_module`` made (padding or cropping may wrap it)."""
    return next(m for m in module.modules() if isinstance(m, (tnn.Linear, tnn.Conv2d, tnn.ConvTranspose2d)))


def _module(layer, shape, classes: int, synced: bool, init: str) -> tnn.Module:
    if isinstance(layer, nn.Residual):
        return Residual(_sequence(layer.layers, shape, classes, synced, init),
                        _sequence(layer.shortcut, shape, classes, synced, init))
    if isinstance(layer, nn.JoinClass):
        return JoinClass(classes, layer.embedding)
    if isinstance(layer, nn.ConditionalBatchNorm):
        return ConditionalBatchNorm(classes, _batchnorm(shape, layer, synced, affine=False))
    if isinstance(layer, nn.Projection):
        return Projection(layer, classes, shape[0])
    if isinstance(layer, nn.Upsample):
        return tnn.Upsample(scale_factor=layer.factor, mode="nearest")
    if isinstance(layer, nn.AvgPool):
        return tnn.AvgPool2d(layer.size)
    if isinstance(layer, nn.GlobalSumPool):
        return GlobalSumPool()
    if isinstance(layer, nn.Dense):
        return tnn.Linear(shape[0], layer.units, bias=layer.bias)
    if isinstance(layer, nn.Conv):
        return _conv(layer, shape)
    if isinstance(layer, nn.ConvTranspose):
        return _conv_transpose(layer, shape)
    if isinstance(layer, nn.BatchNorm):
        return _batchnorm(shape, layer, synced)
    if isinstance(layer, nn.Dropout):
        return Dropout(layer.rate)
    if isinstance(layer, nn.LeakyReLU):
        return tnn.LeakyReLU(layer.slope)
    if isinstance(layer, nn.Reshape):
        return Reshape(layer.shape)
    simple = {nn.ReLU: tnn.ReLU, nn.Tanh: tnn.Tanh, nn.Sigmoid: tnn.Sigmoid, nn.Flatten: tnn.Flatten}
    return simple[type(layer)]()


def _batchnorm(shape, layer, synced: bool, affine: bool = True) -> tnn.Module:
    norm = {(False, 1): BatchNorm1d, (False, 3): BatchNorm2d,
            (True, 1): SyncedBatchNorm1d, (True, 3): SyncedBatchNorm2d}[synced, len(shape)]
    return norm(shape[-1], eps=layer.eps, momentum=1 - layer.momentum, affine=affine)


def _sequence(layers: tuple, shape, classes: int, synced: bool, init: str) -> Sequence:
    """The modules of ``layers`` for an input of ``shape``, initialised, then spectral norm
    registered (a parametrized weight is computed, so it must be drawn before)."""
    shapes = [tuple(shape), *nn.walk(layers, shape, classes)]
    modules = [_module(layer, s, classes, synced, init) for layer, s in zip(layers, shapes)]
    for layer, module in zip(layers, modules):
        if not isinstance(layer, nn.Residual):  # a block's own layers were initialised in its _sequence
            initialise(module, init)
        if getattr(layer, "spectral_norm", False):
            weighted = _weighted(module)
            parametrize.register_parametrization(
                weighted, "weight", SpectralNorm(weighted.weight, isinstance(weighted, tnn.ConvTranspose2d)))
    return Sequence(*modules)


def initialise(module: tnn.Module, init: str) -> None:
    """Weights as ``init`` says; ``normal:STD`` also draws the label embeddings (N(0, STD),
    conditional BatchNorm's scales N(1, STD)), which are Glorot-uniform otherwise."""
    if init == "default":
        return
    std = float(init.split(":", 1)[1]) if init.startswith("normal:") else None
    for sub in module.modules():
        if isinstance(sub, ConditionalBatchNorm) and std is not None:
            tnn.init.normal_(sub.scale.weight, 1.0, std)
        elif isinstance(sub, (JoinClass, Projection)) and std is not None and sub.embedding is not None:
            tnn.init.normal_(sub.embedding.weight, 0.0, std)
        elif isinstance(sub, (tnn.Linear, tnn.Conv2d, tnn.ConvTranspose2d)):
            if std is None:
                tnn.init.xavier_uniform_(sub.weight)
            else:
                tnn.init.normal_(sub.weight, 0.0, std)
            if sub.bias is not None:
                tnn.init.zeros_(sub.bias)
        elif isinstance(sub, (tnn.BatchNorm1d, tnn.BatchNorm2d)) and sub.affine:
            if std is None:
                tnn.init.ones_(sub.weight)
            else:
                tnn.init.normal_(sub.weight, 1.0, std)
            tnn.init.zeros_(sub.bias)


def placed_modules(model: Sequence) -> list[tnn.Module]:
    """The module of each layer, in ``nn.flatten`` order (a residual block before its layers)."""
    found = []
    for module in model:
        found.append(module)
        if isinstance(module, Residual):
            found += placed_modules(module.main) + placed_modules(module.shortcut)
    return found


def compile_network(network: nn.Network, *, sync_batchnorm: bool = False, frozen: frozenset[int] = frozenset()) -> Sequence:
    """A torch module computing ``network`` (``model(x)``, or ``model(x, labels)`` for a
    conditional network); the output shape is checked against the description.
    ``sync_batchnorm``: BatchNorm with the statistics of the whole batch of a distributed run.
    ``frozen``: the layers (``nn.flatten`` positions) whose weights do not train."""
    model = _sequence(network.layers, tuple(network.input_shape), network.classes, sync_batchnorm, network.init)
    placed = placed_modules(model)
    for index in frozen:
        placed[index].requires_grad_(False)
    with torch.no_grad():
        probe = torch.zeros(2, *_torch_shape(network.input_shape))
        labels = torch.zeros(2, dtype=torch.long) if network.conditional else None
        was_training = model.training
        model.eval()
        got = tuple(model(probe, labels).shape[1:])
        model.train(was_training)
    if got != _torch_shape(network.output_shape):
        raise nn.ShapeError(f"compiled network gives {got}, expected {_torch_shape(network.output_shape)}")
    return model


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
