"""The training schedule, the same on every backend: which real images each step sees,
when to log, sample and checkpoint, and when to stop.

Data order is a pure function of the seed and the batch index (each epoch is a fresh
permutation drawn from ``(seed, epoch)``), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gankit.augment import AdaptiveP
from gankit.backend import Trainer, trainer_classes
from gankit.errors import GankitError
from gankit.events import CheckpointSaved, Event, RunFinished, RunStarted, SamplesReady, StepLogged
from gankit.params import Interval
from gankit import checkpoints
from gankit.rundir import RunDir
from gankit.schedules import learning_rates
from gankit.train_config import TrainConfig


class ScheduleError(GankitError, ValueError):
    """The data is too small for the batch size (or similar); the message says how to fix it."""


@dataclass
class Schedule:
    images: int
    batch_size: int
    d_steps: int
    seed: int

    def __post_init__(self):
        self.batches_per_epoch = self.images // self.batch_size
        if self.batches_per_epoch < self.d_steps:
            raise ScheduleError(
                f"{self.images} images make fewer than {self.d_steps} batch(es) of {self.batch_size}; "
                "lower train.batch_size"
            )
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_epoch // self.d_steps

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def batches(self, step: int) -> list[np.ndarray]:
        """The index arrays of the ``d_steps`` real batches step ``step`` (0-based) uses."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.images)
            self._epoch = epoch
        first = within * self.d_steps
        return [self._order[(first + i) * self.batch_size:(first + i + 1) * self.batch_size] for i in range(self.d_steps)]


def _due(every: Interval | None, step: int, steps_per_epoch: int) -> bool:
    if every is None or every.count == 0:
        return False
    return step % every.in_steps(steps_per_epoch) == 0


@dataclass
class Loop:
    trainer: Trainer
    train: TrainConfig
    schedule: Schedule
    run_dir: RunDir
    emit: Callable[[Event], None]
    sample_every: list[Interval]
    should_stop: Callable[[], bool] = lambda: False
    step: int = 0
    """The last step trained (while running, and after it stopped however it stopped)."""
    writer: bool = True
    """Whether this process writes checkpoints and samples (not the other ranks of a distributed run)."""
    augment_state: dict | None = None
    """An adaptive augmentation's controller state, from the checkpoint a resumed run starts at."""
    logged: dict[str, float] | None = None
    """What the step a resumed run starts at logged: the final values of a run that was
    stopped after its last checkpoint, which the resume finishes without training."""
    record: dict | None = None
    """Recorded in every checkpoint's meta besides its step and epoch (the recipe's digest)."""
    seconds_spent: float = 0.0
    """Seconds the training steps have taken on ``train.clock`` (a resumed run starts from
    its checkpoint's), against the ``train.max_seconds`` budget."""
    seconds_before: float = 0.0
    """Wall-clock seconds the earlier sessions of a resumed run had taken, by its checkpoint."""

    def __post_init__(self):
        self.session_started = time.perf_counter()
        augment = self.train.augment
        self.adaptive = AdaptiveP(augment, self.train.batch_size, self.augment_state) if augment and augment.adaptive else None

    def augment_p(self) -> float | None:
        """The augmentation probability of the next step (None: no augmentation)."""
        augment = self.train.augment
        if augment is None:
            return None
        return self.adaptive.p if self.adaptive else augment.probability

    def total_steps(self) -> int:
        return self.train.total_steps(self.schedule.steps_per_epoch)

    def run_seconds(self) -> float:
        """Wall-clock seconds of the whole run so far, its earlier sessions' included."""
        return self.seconds_before + time.perf_counter() - self.session_started

    def learning_rates(self, step: int) -> dict[str, float]:
        """``{"lr_g": ..., "lr_d": ...}``, the rates step ``step`` (0-based) trained with, when a
        schedule changes them; else nothing."""
        rates = learning_rates(self.train, step, self.total_steps())
        return {} if rates is None else dict(zip(("lr_g", "lr_d"), rates))

    def save_checkpoint(self, step: int) -> Path:
        """Write a checkpoint atomically, then drop all but the last ``keep_checkpoints``. Its
        meta holds the epoch and, with a schedule, the rates of the last step trained."""
        if not self.writer:
            return self.run_dir.checkpoint(step)
        last = max(step - 1, 0)
        meta = {"epoch": self.schedule.epoch_of(last), **self.learning_rates(last), **(self.record or {}),
                "train_seconds": self.seconds_spent, "run_seconds": round(self.run_seconds(), 3)}
        if self.adaptive is not None:
            meta["augment"] = self.adaptive.state()
        path = checkpoints.save(self.run_dir, self.trainer, step, meta, keep=self.train.keep_checkpoints)
        self.emit(CheckpointSaved(step, path))
        return path

    def _divergence(self, step: int, values: dict[str, float]) -> str | None:
        losses = {k: v for k, v in values.items() if k.endswith("_loss")}
        if not all(math.isfinite(v) for v in values.values()):
            problem = "a loss is NaN or infinite"
        elif self.train.max_loss is not None and any(abs(v) > self.train.max_loss for v in losses.values()):
            problem = f"a loss exceeds train.max_loss = {self.train.max_loss}"
        else:
            return None
        good = checkpoints.last_good(self.run_dir)
        where = f"the last good checkpoint is {good}" if good else "no checkpoint that verifies was saved before it"
        shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        return f"training diverged at step {step}: {problem} ({shown}); {where}"

    def run(self, start_step: int = 0) -> RunFinished:
        """Train from ``start_step`` to the end, or until stopped or diverged."""
        steps_per_epoch = self.schedule.steps_per_epoch
        total = self.total_steps()
        self.emit(RunStarted(self.run_dir.path, start_step, total, steps_per_epoch, self.train.batch_size,
                             self.trainer.parameter_counts(), self.train.max_seconds, self.seconds_spent))
        values: dict[str, float] = dict(self.logged or {})
        tick, tick_step = time.perf_counter(), start_step
        step = self.step = start_step
        clock = time.process_time if self.train.clock == "cpu" else time.perf_counter
        budget = self.train.max_seconds if self.train.max_seconds is not None else math.inf
        last = step >= total or self.seconds_spent >= budget
        while not last:
            p = self.augment_p()
            extra = {} if p is None else {"augment_p": p}
            began = clock()
            metrics = self.trainer.train_step(self.schedule.batches(step), step, **extra)
            self.seconds_spent += clock() - began
            if self.adaptive is not None:
                self.adaptive.observe(float(metrics["d_real_sign"]))
            step = self.step = step + 1
            last = step == total or self.seconds_spent >= budget
            stopping = not last and self.should_stop()
            checkpoint_due = last or stopping or _due(self.train.checkpoint_every, step, steps_per_epoch)
            if step % self.train.log_every == 0 or checkpoint_due:
                values = {**{name: float(value) for name, value in metrics.items()}, **extra}
                if problem := self._divergence(step, values):
                    return self._finish(RunFinished(step, "diverged", problem, values))
            if step % self.train.log_every == 0 or last:
                now = time.perf_counter()
                logged = {**values, **self.learning_rates(step - 1),
                          "images_per_sec": (step - tick_step) * self.train.batch_size / max(now - tick, 1e-9)}
                tick, tick_step = now, step
                self.emit(StepLogged(step, self.schedule.epoch_of(step - 1), logged, last=last,
                                     seconds_spent=self.seconds_spent))
            if self.writer and (last or any(_due(every, step, steps_per_epoch) for every in self.sample_every)):
                self.emit(self._samples(step))
            if checkpoint_due:
                self.save_checkpoint(step)
            if stopping:
                return self._finish(RunFinished(step, "interrupted", f"stopped at step {step} of {total}", values))
        trained = (f"trained {step} steps, when its budget of train.max_seconds = {budget:g} {self.train.clock} "
                   "seconds ran out" if step < total else f"trained {total} steps")
        if step == start_step:
            return self._finish(RunFinished(step, "completed", f"{trained}; the resume wrote what the end of the run "
                                            "writes, and trained nothing", values))
        return self._finish(RunFinished(step, "completed", trained, values))

    def _samples(self, step: int) -> SamplesReady:
        images = self.trainer.fixed_samples()
        classes = trainer_classes(self.trainer)
        return SamplesReady(step, images, len(images) // classes if classes else None)

    def _finish(self, finished: RunFinished) -> RunFinished:
        self.emit(finished)
        return finished
