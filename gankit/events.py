"""The events a run emits, and the interface of the exporters that consume them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

if TYPE_CHECKING:  # numpy and pydantic stay out of the commands that only print
    import numpy as np

    from gankit.params import Interval

__all__ = ["Event", "RunStarted", "StepLogged", "EvalLogged", "SamplesReady", "CheckpointSaved", "RunFinished",
           "Exporter"]


@dataclass(frozen=True)
class RunStarted:
    run_dir: Path
    start_step: int
    total_steps: int
    steps_per_epoch: int
    batch_size: int
    parameters: dict[str, int] = field(default_factory=dict)
    max_seconds: float | None = None
    """The run's time budget (``train.max_seconds``), on ``train.clock``; None: none."""
    seconds_spent: float = 0.0
    """Seconds of that clock the training steps had taken before this start (a resume's)."""


@dataclass(frozen=True)
class StepLogged:
    """The scalars of step ``step``: d_loss, g_loss, d_real (mean D(x)), d_fake (mean
    D(G(z))), and images_per_sec since the previous StepLogged."""

    step: int
    epoch: int
    values: dict[str, float]
    last: bool = False
    """The run's last step: its ``total_steps``, or an earlier one where ``train.max_seconds`` ran out."""
    seconds_spent: float | None = None
    """Seconds of ``train.clock`` the whole run's training steps have taken so far (None: not measured)."""


@dataclass(frozen=True)
class EvalLogged:
    """Scores of the live generator (a recipe's ``[eval]``), e.g. fid, kid, kid_std, is."""

    step: int
    epoch: int
    values: dict[str, float]


@dataclass(frozen=True)
class SamplesReady:
    """The generator's output for the run's fixed noise: uint8 (N, H, W, C). A conditional
    run's holds one row of ``columns`` images per class, in class order."""

    step: int
    images: np.ndarray
    columns: int | None = None


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: Path


@dataclass(frozen=True)
class RunFinished:
    """status: completed, interrupted or diverged."""

    step: int
    status: str
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)


Event = Union[RunStarted, StepLogged, EvalLogged, SamplesReady, CheckpointSaved, RunFinished]


class Exporter(Protocol):
    """What an exporter plugin's factory returns.

    ``sample_every``: how often it wants fixed-noise samples (None if never); the run
    renders samples at every step any exporter asks for, and at the end.
    """

    sample_every: Interval | None
    """How often it wants the fixed-noise samples (a ``SamplesReady``), or None."""

    def handle(self, event: Event) -> None:
        """Every event of the run, in order: ``RunStarted`` first (again at each resume),
        ``RunFinished`` last (not on an abort). What it raises disables it, or stops the run
        (``train.on_exporter_error``)."""
