"""Training on from another run: its weights as the start (``train.init_from``), and D's
first weight layers kept fixed (``train.freeze_d``, FreezeD: Mo, Cho & Shin 2020).

Which of D's weights stay fixed is decided once, from the ``gankit.nn`` description
(``gankit.nn.frozen_layers``); a backend only leaves those layers' weights out of what D's optimizer
trains. Loading the weights is the backend's ``Trainer.load_weights``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gankit import nn
from gankit.nn import weight_layers
from gankit.backend import BackendError, CheckpointError, Trainer
from gankit.recipe import RecipeError, read_toml
from gankit.checkpoints import verify_checkpoint, weights_source
from gankit.rundir import RunError, read_meta
from gankit.train_config import TrainConfig

def check_freeze(train: TrainConfig, architecture: nn.Architecture, backend: str) -> None:
    """A ValueError naming ``train.freeze_d`` unless this architecture's D, as ``backend``
    builds it, has at least that many weight layers to freeze."""
    if not train.freeze_d:
        return
    if architecture.discriminator is None or backend in architecture.native:
        raise ValueError(f"train.freeze_d: the architecture builds its networks natively for the {backend} backend, "
                         "with no gankit.nn description to count D's layers in; remove train.freeze_d")
    found = len(weight_layers(architecture.discriminator))
    if train.freeze_d > found:
        raise ValueError(f"train.freeze_d: {train.freeze_d} is more than the {found} weight layers of this "
                         f"discriminator; use 1 to {found}")


@dataclass(frozen=True)
class Source:
    """The checkpoint a run started from, and the step it was saved at."""

    checkpoint: Path
    step: int

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "step": self.step}

    @classmethod
    def from_dict(cls, table: Any) -> Source | None:
        """A source recorded by ``as_dict`` (in a run's recipe.toml), or None."""
        try:
            return cls(Path(table["checkpoint"]), int(table["step"]))
        except (TypeError, KeyError, ValueError):
            return None


def find_source(init_from: str, backend: str) -> Source:
    """The verified checkpoint ``train.init_from`` names (relative to the working directory),
    for a run on ``backend``; a RunError naming the key otherwise."""
    key = "train.init_from"
    try:
        checkpoint, run = weights_source(Path(init_from))
        meta = read_meta(verify_checkpoint(checkpoint))
    except RunError as error:
        raise RunError(f"{key}: {error}") from None
    except CheckpointError as error:
        raise RunError(f"{key}: {init_from}: {error}; name another of its checkpoints") from None
    if run is not None:
        try:
            there = read_toml(run.recipe).get("backend", {}).get("use")
        except RecipeError:
            there = None
        if isinstance(there, str) and there != backend:
            raise RunError(f"{key}: {init_from} was trained on the {there} backend, whose checkpoints this "
                           f"{backend} run cannot read; set backend.use = \"{there}\" or start from a {backend} run")
    step = meta.get("step") if isinstance(meta, dict) else None
    return Source(checkpoint.resolve(), step if isinstance(step, int) else 0)


def check_loadable(trainer: Trainer) -> None:
    """``Trainer.load_weights`` is optional: a backend without it cannot start from another run."""
    if not callable(getattr(trainer, "load_weights", None)):
        raise RunError("train.init_from: the backend cannot load weights into a new run (its trainer has no "
                       "load_weights); remove train.init_from")


def start_from(trainer: Trainer, source: Source) -> None:
    """Load the source's networks into ``trainer``; a RunError of one line when they do not fit."""
    try:
        trainer.load_weights(source.checkpoint)
    except BackendError as error:
        raise RunError(f"train.init_from: {source.checkpoint}: {error}; use a run of the same architecture") from None
    except CheckpointError as error:
        raise RunError(f"train.init_from: {error}") from None
