"""The training schedule, the same on every backend: which real images each step sees,
when to log, sample and checkpoint, and when to stop.

Data order is a pure function of the seed and the batch index (each epoch is a fresh
permutation drawn from ``(seed, epoch)``), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gankit.backend import CheckpointError, Trainer
from gankit.events import CheckpointSaved, Event, RunFinished, RunStarted, SamplesReady, StepLogged
from gankit.data import sha256_of
from gankit.files import atomic_directory, follow_umask, remove_directory, write_json
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


MANIFEST = "manifest.json"
"""In every checkpoint: the sha256 of each other file in it, written last."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoints, oldest first (temporary directories are skipped). Listed is
    not proven whole: ``verify_checkpoint`` before using one."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "meta.json").is_file())


def read_meta(checkpoint: Path) -> dict:
    try:
        return json.loads((checkpoint / "meta.json").read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(checkpoint / "meta.json", error) from None


def no_space_left(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` comes from a full disk: an ENOSPC or EDQUOT anywhere in its chain,
    the words in a framework's message, or (frameworks that hide the errno) a full ``folder``."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(cause) or "StorageFull" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def write_checkpoint(trainer: Trainer, path: Path, meta: dict) -> Path:
    """Save ``trainer`` into the checkpoint folder ``path`` atomically: its files, ``meta``
    as meta.json, and last the manifest of every file's sha256. A full disk is an OSError
    with errno ENOSPC whatever the framework raised, and leaves no folder behind."""
    try:
        with atomic_directory(path) as staging:
            trainer.save(staging)
            follow_umask(staging)
            write_json(staging / "meta.json", meta)
            files = sorted(p for p in staging.rglob("*") if p.is_file())
            write_json(staging / MANIFEST, {"sha256": {p.relative_to(staging).as_posix(): sha256_of(p) for p in files}})
    except Exception as error:
        if no_space_left(error, path.parent):
            raise OSError(errno.ENOSPC, "no space left on device", str(path)) from error
        raise
    return path


def verify_checkpoint(checkpoint: Path) -> Path:
    """Raise CheckpointError naming the file unless every file the manifest lists is there
    with its recorded sha256."""
    manifest = checkpoint / MANIFEST
    try:
        listed = json.loads(manifest.read_text())["sha256"]
        if not isinstance(listed, dict):
            raise ValueError("no table of sha256 digests")
    except FileNotFoundError:
        raise CheckpointError(manifest, "missing, so the checkpoint cannot be proven whole") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(manifest, error) from None
    for name, expected in sorted(listed.items()):
        file = checkpoint / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not file.is_file():
            raise CheckpointError(file, "missing")
        if sha256_of(file) != expected:
            raise CheckpointError(file, "damaged: its sha256 differs from the one recorded when it was saved")
    return checkpoint


def last_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that verifies, or None."""
    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            return verify_checkpoint(checkpoint)
        except CheckpointError:
            continue
    return None


@dataclass
class Loop:
    trainer: Trainer
    train: TrainConfig
    schedule: Schedule
    run_dir: Path
    emit: Callable[[Event], None]
    sample_every: list[Interval]
    should_stop: Callable[[], bool] = lambda: False
    step: int = 0
    """The last step trained (while running, and after it stopped however it stopped)."""
    writer: bool = True
    """Whether this process writes checkpoints and samples (not the other ranks of a distributed run)."""

    def total_steps(self) -> int:
        return self.train.total_steps(self.schedule.steps_per_epoch)

    def save_checkpoint(self, step: int) -> Path:
        """Write a checkpoint atomically, then drop all but the last ``keep_checkpoints``."""
        path = self.run_dir / "checkpoints" / checkpoint_name(step)
        if not self.writer:
            return path
        write_checkpoint(self.trainer, path, {"step": step, "epoch": self.schedule.epoch_of(max(step - 1, 0))})
        for old in list_checkpoints(self.run_dir)[: -self.train.keep_checkpoints]:
            remove_directory(old)
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
        good = last_good_checkpoint(self.run_dir)
        where = f"the last good checkpoint is {good}" if good else "no checkpoint that verifies was saved before it"
        shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        return f"training diverged at step {step}: {problem} ({shown}); {where}"

    def run(self, start_step: int = 0) -> RunFinished:
        """Train from ``start_step`` to the end, or until stopped or diverged."""
        steps_per_epoch = self.schedule.steps_per_epoch
        total = self.total_steps()
        self.emit(RunStarted(self.run_dir, start_step, total, steps_per_epoch, self.train.batch_size,
                             self.trainer.parameter_counts()))
        values: dict[str, float] = {}
        tick, tick_step = time.perf_counter(), start_step
        step = self.step = start_step
        while step < total:
            metrics = self.trainer.train_step(self.schedule.batches(step), step)
            step = self.step = step + 1
            stopping = step < total and self.should_stop()
            checkpoint_due = step == total or stopping or _due(self.train.checkpoint_every, step, steps_per_epoch)
            if step % self.train.log_every == 0 or checkpoint_due:
                values = {name: float(value) for name, value in metrics.items()}
                if problem := self._divergence(step, values):
                    return self._finish(RunFinished(step, "diverged", problem, values))
            if step % self.train.log_every == 0 or step == total:
                now = time.perf_counter()
                logged = {**values, "images_per_sec": (step - tick_step) * self.train.batch_size / max(now - tick, 1e-9)}
                tick, tick_step = now, step
                self.emit(StepLogged(step, self.schedule.epoch_of(step - 1), logged))
            if self.writer and (any(_due(every, step, steps_per_epoch) for every in self.sample_every)
                                or (step == total and self.sample_every)):
                self.emit(SamplesReady(step, self.trainer.fixed_samples()))
            if checkpoint_due:
                self.save_checkpoint(step)
            if stopping:
                return self._finish(RunFinished(step, "interrupted", f"stopped at step {step} of {total}", values))
        return self._finish(RunFinished(step, "completed", f"trained {total} steps", values))

    def _finish(self, finished: RunFinished) -> RunFinished:
        self.emit(finished)
        return finished
