"""Learning-rate schedules, written once for every backend: the factor by which ``lr_g`` and
``lr_d`` are multiplied at each step.

The factor is a pure function of the step, the run's length and the ``[train]`` keys, so a
resumed run applies exactly the rates an uninterrupted one would, and a backend only sets
the rate it is given (the ``set_learning_rate`` primitive). The run's length is its
``train.steps`` as the trainer gets it: gankit resolves ``epochs`` to steps before it
builds the trainer. Lengthening a run on resume (``--set train.steps=N``) stretches the
schedule over the new length.
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_factor", "scheduled", "learning_rates", "check_length"]

SCHEDULES = {
    "constant": "the base rate throughout (after the warm-up, if any)",
    "linear_decay": "linearly from the base rate to 0 at the run's end",
    "cosine": "half a cosine from the base rate to 0 at the run's end",
}


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """The factor of the base rates at step ``step`` (0-based) of a run of ``total`` steps:
    ``step / warmup`` during the warm-up, then, with ``t = step - warmup`` and
    ``T = total - warmup``, 1 (constant), ``1 - t / T`` (linear_decay) or
    ``(1 + cos(pi t / T)) / 2`` (cosine); 0 at step ``total``, one past the last."""
    if step < warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    length = total - warmup
    progress = min(step - warmup, length) / length
    if schedule == "linear_decay":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: {', '.join(SCHEDULES)}")


def scheduled(train) -> bool:
    """Whether the ``[train]`` table's rates change during the run (a schedule other than
    constant, or a warm-up); a run whose rates do not never sets them."""
    return train.lr_schedule != "constant" or train.lr_warmup > 0


def learning_rates(train, step: int, total: int) -> tuple[float, float] | None:
    """``(lr_g, lr_d)`` at step ``step`` of a run of ``total`` steps; None when the rates are
    the recipe's throughout."""
    if not scheduled(train):
        return None
    factor = lr_factor(train.lr_schedule, step, total, train.lr_warmup)
    return train.lr_g * factor, train.lr_d * factor


def check_length(train, total: int) -> None:
    """A ValueError, naming the key, when the warm-up does not end before the run does."""
    if train.lr_warmup >= total:
        raise ValueError(f"train.lr_warmup = {train.lr_warmup} steps is not shorter than the run ({total} steps); "
                         "lower train.lr_warmup or train longer")
