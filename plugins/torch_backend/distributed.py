"""One run on several processes (``gankit.distributed``, started by torchrun): each rank's
share of every batch, gradients and step scalars averaged over the ranks, and BatchNorm
that normalises with the whole batch's statistics.

The shared step takes gradients with ``torch.autograd.grad``, which DistributedDataParallel's
hooks do not see; so, as StyleGAN2-ADA's training loop does, the gradients are averaged
explicitly, flattened into one all-reduce per update: DistributedDataParallel's
arithmetic with the step left as it is.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from gankit.backend import BackendError


class Shards:
    """This rank's place among ``size`` ranks that train one run together."""

    def __init__(self, batch_size: int):
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        if batch_size % self.size:
            raise BackendError(f"train.batch_size {batch_size} does not split evenly over {self.size} processes; "
                               f"use a multiple of {self.size}")

    def take(self, batches: list[np.ndarray], noise: np.ndarray, fake_labels: np.ndarray | None = None,
             augment: dict[str, np.ndarray] | None = None):
        """This rank's share of the step's real batches, of its noise (d_steps, batch, latent),
        of a conditional run's fake labels (d_steps, batch) and of the augmentations' arrays
        (calls, batch, ...): every ``size``-th row, from the same schedule on every rank."""
        mine = slice(self.rank, None, self.size)
        return ([indices[mine] for indices in batches], noise[:, mine],
                None if fake_labels is None else fake_labels[:, mine],
                {name: array[:, mine] for name, array in (augment or {}).items()})

    def average(self, tensors) -> list[torch.Tensor]:
        """The mean of ``tensors`` over the ranks, in one all-reduce."""
        tensors = list(tensors)
        flat = _flatten_dense_tensors(tensors)
        dist.all_reduce(flat)
        flat.div_(self.size)
        return list(_unflatten_dense_tensors(flat, tensors))


def shards(batch_size: int) -> Shards | None:
    """The ranks of this run when torchrun started more than one, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Shards(batch_size)
    return None


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank."""
    if device.type == "cuda" and dist.is_available() and dist.is_initialized():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return device


class SyncedStatistics:
    """A BatchNorm mixin: in training, the mean and (biased) variance of the whole batch,
    over every rank, through a differentiable all-reduce (gloo on CPU as well as NCCL;
    torch's SyncBatchNorm runs on GPUs only)."""

    def forward(self, x):
        if not self.training or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        channels = x.shape[1]
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        mean = totals[:channels] / totals[-1]
        variance = totals[channels:2 * channels] / totals[-1] - mean * mean
        shape = [1, channels] + [1] * (x.dim() - 2)
        scale = (self.weight / torch.sqrt(variance + self.eps)).view(shape)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(variance, self.momentum)
            self.num_batches_tracked += 1
        return (x - mean.view(shape)) * scale + self.bias.view(shape)
