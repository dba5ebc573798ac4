"""One run on several processes, started by ``torchrun --nproc-per-node K -m gankit run
RECIPE`` (or ``gankit run --gpus K``): which process this is, and the few things the
processes must agree on. Rank 0 alone writes the run directory; every rank trains its
share of each batch, and the backend averages the gradients (``torch.distributed``,
gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class World:
    rank: int
    size: int

    @property
    def writer(self) -> bool:
        """Whether this process writes the run directory and shows progress."""
        return self.rank == 0

    def share(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so that all stop at the same step). On a
        CPU group, so that it never waits for a GPU."""
        import torch
        import torch.distributed as dist

        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_cpu_group())
        return bool(value.item())

    def stop_together(self, should_stop: Callable[[], bool]) -> Callable[[], bool]:
        return lambda: self.any(should_stop())


_GROUP: list = []


def _cpu_group():
    if not _GROUP:
        import torch.distributed as dist

        _GROUP.append(dist.new_group(backend="gloo"))
    return _GROUP[0]


def current() -> World | None:
    """The world this process belongs to when torchrun started it with more than one
    process (joining it on first call); None otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        import torch

        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), dist.get_world_size())
