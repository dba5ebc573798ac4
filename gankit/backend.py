"""The interface a backend plugin implements.

A backend's factory returns an object with ``trainer(...)``; the trainer owns the
networks, optimizers, device, random state and checkpoint format, and trains one step at
a time. What a step computes (losses, targets, penalties, update order, spectral-norm
iterations, EMA) is written once in ``gankit.objectives`` and ``gankit.updates`` against
the backend's ``Primitives``; the schedule around the steps (data order, logging,
sampling, checkpoints, stopping) lives in ``gankit.training``. Both are the same on every
backend.
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

    def train_step(self, batches: list[np.ndarray], step: int) -> dict[str, Any]:
        """Step ``step`` (0-based): ``gankit.updates.Updates.step`` run with this backend's
        primitives on ``d_steps`` real batches (``batches``: arrays of indices into the
        images). Returns its scalars as framework values, read only when logged."""

    def fixed_samples(self) -> np.ndarray:
        """The generator's output for the fixed noise, uint8 (N, H, W, C): the EMA generator's
        when ``train.ema`` is set."""

    def generate(self, count: int, seed: int, *, raw: bool = False) -> np.ndarray:
        """``count`` new samples from noise drawn with ``seed``, uint8 (N, H, W, C), from the
        EMA generator when there is one, unless ``raw``."""

    def save(self, directory: Path) -> None:
        """Write everything needed to continue training into the (empty) directory."""

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore what ``save`` wrote; never executes code from the files."""


class Primitives(Protocol):
    """What ``gankit.updates`` and ``gankit.objectives`` compute with: a backend's tensors
    (which support ``+ - * /`` with each other and with Python numbers) and these methods.
    Networks are named ``"generator"`` and ``"discriminator"``."""

    def latent(self, like: Any) -> Any:
        """Noise vectors from the run's noise generator, one per row of ``like``."""

    def forward_generator(self, z: Any) -> Any:
        """The generator in training mode."""

    def forward_discriminator(self, images: Any) -> Any:
        """The discriminator in training mode: one logit (N, 1) per image."""

    def tape(self) -> Any:
        """A context manager that records computations for differentiation (re-enterable),
        with ``gradient(loss, network_name)``: d loss / d that network's trainable weights."""

    def apply(self, network: str, gradients: Any) -> None:
        """An optimizer step of that network (after ``train.clip_value`` clipping)."""

    def input_gradient(self, function: Any, inputs: Any) -> tuple[Any, Any]:
        """``(function(inputs), d sum(function(inputs)) / d inputs)``, differentiable again
        (for gradient penalties inside a recorded D loss)."""

    def batch_uniform(self, like: Any) -> Any:
        """U(0, 1) noise shaped (N, 1, ...) to broadcast over ``like``, from the noise generator."""

    def stop_gradient(self, x: Any) -> Any: ...
    def mean(self, x: Any) -> Any: ...
    def sum(self, x: Any) -> Any: ...
    def sum_per_sample(self, x: Any) -> Any:
        """The sum over every axis but the first: shape (N,)."""
    def sqrt(self, x: Any) -> Any: ...
    def softplus(self, x: Any) -> Any: ...
    def relu(self, x: Any) -> Any: ...
    def sigmoid(self, x: Any) -> Any: ...
    def matvec(self, matrix: Any, vector: Any, *, transpose: bool = False) -> Any: ...

    def assign(self, variable: Any, value: Any) -> None:
        """Overwrite a weight or state tensor in place."""

    def ema_weights(self) -> list[tuple[Any, Any]]:
        """(average, live) pairs of the generator's trainable weights."""

    def ema_state(self) -> list[tuple[Any, Any]]:
        """(average, live) pairs of the generator's other state (BatchNorm statistics, ...)."""

    def advance_spectral_norm(self, network: str) -> None:
        """``u <- gankit.spectral.advance(self, matrix, u)`` for every spectral-normalised
        layer of that network (its weight as a (rows = outputs) x columns matrix)."""


class Backend(Protocol):
    def trainer(self, architecture: Architecture, spec: DataSpec, train: TrainConfig, seed: int) -> Trainer: ...


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt or does not fit the networks."""

    def __init__(self, path: Path, cause: BaseException | str):
        self.path = Path(path)
        kind = "error" if isinstance(cause, str) else type(cause).__name__
        super().__init__(f"checkpoint file {self.path} cannot be loaded ({kind}: {cause})")


# What a plugin may import from here (docs/plugins.md); the rest is gankit's own.
__all__ = ["Backend", "Trainer", "Primitives", "BackendError", "CheckpointError"]
