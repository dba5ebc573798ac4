"""The training schedule, the same on every backend: which real images each step sees,
when to log, sample and checkpoint, and when to stop.

Data order is a pure function of the seed and the batch index (each epoch is a fresh
permutation drawn from ``(seed, epoch)``), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gankit.backend import Trainer
from gankit.events import CheckpointSaved, Event, RunFinished, RunStarted, SamplesReady, StepLogged
from gankit.files import atomic_directory, write_json
from gankit.params import Interval
from gankit.train_config import TrainConfig


class ScheduleError(ValueError):
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


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """A run's complete checkpoints, oldest first (temporary directories are skipped)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "meta.json").is_file())


@dataclass
class Loop:
    trainer: Trainer
    train: TrainConfig
    schedule: Schedule
    run_dir: Path
    emit: Callable[[Event], None]
    sample_every: list[Interval]
    should_stop: Callable[[], bool] = lambda: False
    keep_checkpoints: int = 3

    def total_steps(self) -> int:
        return self.train.total_steps(self.schedule.steps_per_epoch)

    def save_checkpoint(self, step: int) -> Path:
        path = self.run_dir / "checkpoints" / checkpoint_name(step)
        with atomic_directory(path) as staging:
            self.trainer.save(staging)
            write_json(staging / "meta.json", {"step": step, "epoch": self.schedule.epoch_of(max(step - 1, 0))})
        for old in list_checkpoints(self.run_dir)[: -self.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        self.emit(CheckpointSaved(step, path))
        return path

    def resume_step(self, checkpoint: Path) -> int:
        self.trainer.load(checkpoint)
        return int(json.loads((checkpoint / "meta.json").read_text())["step"])

    def run(self, start_step: int = 0) -> RunFinished:
        steps_per_epoch = self.schedule.steps_per_epoch
        total = self.total_steps()
        self.emit(RunStarted(self.run_dir, start_step, total, steps_per_epoch, self.train.batch_size,
                             self.trainer.parameter_counts()))
        checkpoint_every = self.train.checkpoint_every
        last_checkpoint = None
        values: dict[str, float] = {}
        tick, tick_step = time.perf_counter(), start_step
        step = start_step
        while step < total:
            metrics = self.trainer.train_step(self.schedule.batches(step))
            step += 1
            if step % self.train.log_every == 0 or step == total:
                values = {name: float(value) for name, value in metrics.items()}
                now = time.perf_counter()
                values["images_per_sec"] = (step - tick_step) * self.train.batch_size / max(now - tick, 1e-9)
                tick, tick_step = now, step
                if not all(math.isfinite(v) for v in values.values()):
                    where = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was saved"
                    message = f"training diverged at step {step} (non-finite loss: {values}); {where}"
                    finished = RunFinished(step, "diverged", message, values)
                    self.emit(finished)
                    return finished
                self.emit(StepLogged(step, self.schedule.epoch_of(step - 1), values))
            if step < total and any(_due(every, step, steps_per_epoch) for every in self.sample_every):
                self.emit(SamplesReady(step, self.trainer.fixed_samples()))
            if step < total and _due(checkpoint_every, step, steps_per_epoch):
                last_checkpoint = self.save_checkpoint(step)
            if step < total and self.should_stop():
                last_checkpoint = self.save_checkpoint(step)
                finished = RunFinished(step, "interrupted", f"stopped at step {step} of {total}", values)
                self.emit(finished)
                return finished
        if self.sample_every:
            self.emit(SamplesReady(step, self.trainer.fixed_samples()))
        self.save_checkpoint(step)
        finished = RunFinished(step, "completed", f"trained {total} steps", values)
        self.emit(finished)
        return finished
