"""The PyTorch backend. torch is imported only when a run actually uses this backend."""

from __future__ import annotations

from pydantic import Field

from gankit import hookimpl
from gankit.backend import BackendParams, lazy_backend


class TorchParams(BackendParams):
    ACCELERATORS = {"cuda": (), "mps": ()}
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    threads: int = Field(0, ge=0, le=512, description="CPU threads for torch (0: torch's default)")


def _trainer():
    from gankit_plugins.torch_backend.trainer import TorchTrainer

    return TorchTrainer


@hookimpl
def register_backends(register):
    register("torch", lazy_backend(_trainer), params=TorchParams, requires=("torch", "safetensors"),
             description="PyTorch: CPU, CUDA or Apple MPS; safetensors checkpoints")
