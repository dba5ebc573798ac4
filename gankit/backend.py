"""The interface a backend plugin implements.

A backend's factory returns an object with ``trainer(...)``; the trainer owns the
networks, optimizers, device, random state and checkpoint format, and trains one step at
a time. The schedule around the steps (data order, logging, sampling, checkpoints,
stopping) lives in ``gankit.training`` so that it is the same on every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gankit.data import DataSpec
from gankit.nn import Architecture
from gankit.train_config import TrainConfig


class BackendError(Exception):
    """The backend cannot run this recipe (unsupported device, architecture, ...)."""


class Trainer(Protocol):
    def parameter_counts(self) -> dict[str, int]:
        """{"generator": n, "discriminator": m}"""

    def set_data(self, images: np.ndarray) -> None:
        """Take the training images, uint8 (N, H, W, C); the trainer may move them to its device."""

    def train_step(self, batches: list[np.ndarray]) -> dict[str, Any]:
        """One generator update and ``d_steps`` discriminator updates; ``batches`` holds
        ``d_steps`` arrays of indices into the images. Returns scalars (d_loss, g_loss,
        d_real, d_fake) as framework values, read only when logged."""

    def fixed_samples(self) -> np.ndarray:
        """The generator's output for the fixed noise, uint8 (N, H, W, C)."""

    def generate(self, count: int, seed: int) -> np.ndarray:
        """``count`` new samples from noise drawn with ``seed``, uint8 (N, H, W, C)."""

    def save(self, directory: Path) -> None:
        """Write everything needed to continue training into the (empty) directory."""

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore what ``save`` wrote; never executes code from the files."""


class Backend(Protocol):
    def trainer(self, architecture: Architecture, spec: DataSpec, train: TrainConfig, seed: int) -> Trainer: ...


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt or does not fit the networks."""

    def __init__(self, path: Path, cause: BaseException | str):
        self.path = Path(path)
        super().__init__(f"checkpoint file {self.path} cannot be loaded ({type(cause).__name__ if not isinstance(cause, str) else 'error'}: {cause})")
