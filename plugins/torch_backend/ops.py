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

    @staticmethod
    def sum_per_sample(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)

    @staticmethod
    def matvec(matrix: torch.Tensor, vector: torch.Tensor, *, transpose: bool = False) -> torch.Tensor:
        return torch.mv(matrix.t() if transpose else matrix, vector)
