"""The torch backend's side of one run on several processes: torchrun starts them
(``launch_command``), and each joins the others (``join``) through ``torch.distributed``,
gloo on CPUs and NCCL on GPUs. torch is imported only when a run has several processes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from gankit.backend import BackendError


def started_processes() -> int:
    """How many processes torchrun started this run on ($WORLD_SIZE; 1 when unset)."""
    text = os.environ.get("WORLD_SIZE", "1").strip() or "1"
    if not text.isdigit() or len(text) > 6:
        raise BackendError(f"WORLD_SIZE={text[:40]}: not a number of processes; torchrun sets it, unset it to "
                           "train in one process")
    return int(text)


def launch_command(processes: int, arguments: list[str]) -> list[str]:
    """``python -m gankit ARGUMENTS`` under ``torchrun --nproc-per-node PROCESSES``, one GPU each."""
    import torch

    if torch.cuda.device_count() < processes:
        raise BackendError(f"this machine has {torch.cuda.device_count()} CUDA GPU(s); on CPUs run "
                           f"torchrun --nproc-per-node {processes} -m gankit run RECIPE (gloo)")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "gankit", *arguments]


@dataclass(frozen=True)
class TorchWorld:
    """This process's place among the ones torchrun started (``gankit.backend.World``)."""

    rank: int
    size: int

    def share(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """On a CPU group, so that it never waits for a GPU."""
        import torch
        import torch.distributed as dist

        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_cpu_group())
        return bool(value.item())


_GROUP: list = []


def _cpu_group():
    if not _GROUP:
        import torch.distributed as dist

        _GROUP.append(dist.new_group(backend="gloo"))
    return _GROUP[0]


def join() -> TorchWorld | None:
    """The processes torchrun started this one among, joined on the first call; None when
    it started one, or none."""
    if started_processes() <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return TorchWorld(dist.get_rank(), dist.get_world_size())
