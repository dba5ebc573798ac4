"""The stateless primitives of ``gankit.backend.Primitives`` on torch tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TensorOps:
    """Elementwise and reduction primitives; the trainer adds the stateful ones."""

    stop_gradient = staticmethod(torch.Tensor.detach)
    mean = staticmethod(torch.mean)
    sum = staticmethod(torch.sum)
    sqrt = staticmethod(torch.sqrt)
    softplus = staticmethod(F.softplus)
    relu = staticmethod(F.relu)
    sigmoid = staticmethod(torch.sigmoid)
    sign = staticmethod(torch.sign)

    @staticmethod
    def sum_per_sample(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)

    @staticmethod
    def matvec(matrix: torch.Tensor, vector: torch.Tensor, *, transpose: bool = False) -> torch.Tensor:
        return torch.mv(matrix.t() if transpose else matrix, vector)

    @staticmethod
    def per_sample(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(-1, 1, 1, 1)

    @staticmethod
    def per_pixel(values: torch.Tensor) -> torch.Tensor:
        """(N, H, W) -> (N, 1, H, W), to broadcast over the channels of NCHW images."""
        return values.unsqueeze(1)

    @staticmethod
    def channel_mean(images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=1, keepdim=True)

    @staticmethod
    def gather_pixels(images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Output pixel (h, w) of image n is input pixel ``indices[n, h, w]`` (flat over H x W)
        of image n, every channel; the index H*W reads 0."""
        n, c, h, w = images.shape
        flat = F.pad(images.reshape(n, c, h * w), (0, 1))
        picked = flat.gather(2, indices.reshape(n, 1, h * w).long().expand(n, c, h * w)).reshape(n, c, h, w)
        layout = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return picked.contiguous(memory_format=layout)
