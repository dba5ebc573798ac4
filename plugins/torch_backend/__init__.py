"""The PyTorch backend. torch is imported only when a run actually uses this backend."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from gankit import hookimpl
from gankit.params import Params

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class TorchParams(Params):
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    threads: int = Field(0, ge=0, le=512, description="CPU threads for torch (0: torch's default)")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: the networks run under bfloat16 "
                                               "autocast (weights, optimizer and losses stay float32)")
    compile: bool = Field(False, description="torch.compile the networks (the first steps take longer)")
    sync_batchnorm: bool = Field(False, description="on several processes (torchrun): BatchNorm normalises with "
                                 "the statistics of the whole batch, not of each process's share")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE.match(value):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return value


class TorchBackend:
    name = "torch"

    def __init__(self, params: TorchParams):
        self.params = params

    def trainer(self, architecture, spec, train, seed):
        from gankit_plugins.torch_backend.trainer import TorchTrainer

        return TorchTrainer(self.params, architecture, spec, train, seed)


@hookimpl
def register_backends(register):
    register("torch", TorchBackend, params=TorchParams, requires=("torch", "safetensors"),
             description="PyTorch: CPU, CUDA or Apple MPS; safetensors checkpoints")
