"""The PyTorch backend. torch is imported only when a run actually uses this backend."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from gankit import hookimpl
from gankit.backend import BackendParams


class TorchParams(BackendParams):
    ACCELERATORS = {"cuda": (), "mps": ()}
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    threads: Union[Literal["auto"], Annotated[int, Field(ge=0, le=512)]] = Field(
        "auto", description="CPU threads for torch: auto (the cores other processes leave free when the run starts, "
        "kept on resume), 0 (torch's default: every physical core) or a number")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: the networks run under bfloat16 "
                                               "autocast (weights, optimizer and losses stay float32)")
    compile: bool = Field(False, description="torch.compile the networks (the first steps take longer)")
    sync_batchnorm: bool = Field(False, description="on several processes (torchrun): BatchNorm normalises with "
                                 "the statistics of the whole batch, not of each process's share")


class TorchBackend:
    """Trainers (torch imported when the first is made), and one run on several processes
    started by torchrun (``gankit run --gpus K``)."""

    def __init__(self, params: TorchParams):
        self.params = params

    def trainer(self, architecture, spec, train, seed: int):
        from gankit_plugins.torch_backend.trainer import TorchTrainer

        return TorchTrainer(self.params, architecture, spec, train, seed)

    def launch_command(self, processes: int, arguments: list[str]) -> list[str]:
        from gankit_plugins.torch_backend.world import launch_command

        return launch_command(processes, arguments)

    def world(self):
        from gankit_plugins.torch_backend.world import join

        return join()


@hookimpl
def register_backends(register):
    register("torch", TorchBackend, params=TorchParams, requires=("torch", "safetensors"),
             description="PyTorch: CPU, CUDA or Apple MPS; safetensors checkpoints")
