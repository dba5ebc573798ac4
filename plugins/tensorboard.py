"""TensorBoard event files in the run directory: ``tensorboard --logdir runs`` shows every run.

Scalars: each value of a logged step (``train/d_loss``, ``train/d_real``, ...) and of an
evaluation (``eval/fid``, ...); images: the fixed-noise grid (``samples``); for a sweep,
the swept values as hyperparameters, so the HParams view compares the runs. Written with
tensorboardX, which needs neither TensorFlow nor torch.

A resumed run continues the same curves: its event file starts by purging whatever the
earlier session logged after the checkpoint it resumes from, so no step shows twice.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from gankit import hookimpl
from gankit.events import CheckpointSaved, EvalLogged, RunFinished, RunStarted, SamplesReady, StepLogged
from gankit.images import grid
from gankit.params import Every, Interval, Params
from gankit.rundir import RunDir


class TensorBoardParams(Params):
    images_every: Every = Field(Interval(500, "steps"),
                                description="log the fixed-noise grid this often (steps or epochs); 0: at the end only")
    flush_seconds: int = Field(30, ge=1, le=3600, description="write buffered events to disk at least this often")


def hparam_value(value: Any) -> str | float | bool:
    """TensorBoard's HParams take numbers, strings and booleans; a list shows as text."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


class TensorBoardExporter:
    def __init__(self, params: TensorBoardParams, run_dir: RunDir):
        self.params, self.run_dir = params, RunDir(run_dir)
        self.sample_every = params.images_every
        self.writer = None

    def handle(self, event) -> None:
        if isinstance(event, RunStarted):
            self._open(event.start_step)
        elif self.writer is None:
            return
        elif isinstance(event, (StepLogged, EvalLogged)):
            prefix = "train" if isinstance(event, StepLogged) else "eval"
            for key, value in event.values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, event.step)
        elif isinstance(event, SamplesReady):
            image = grid(event.images, event.columns)
            self.writer.add_image("samples", image[..., 0] if image.shape[-1] == 1 else image, event.step,
                                  dataformats="HW" if image.shape[-1] == 1 else "HWC")
        elif isinstance(event, CheckpointSaved):
            self.writer.flush()
        elif isinstance(event, RunFinished):
            self.writer.close()
            self.writer = None

    def _open(self, start_step: int) -> None:
        from tensorboardX import SummaryWriter

        # Files are read in name order: the suffix keeps a resumed session's file after the
        # earlier one even when both start within the same second.
        self.writer = SummaryWriter(str(self.run_dir), purge_step=start_step + 1 if start_step else None,
                                    flush_secs=self.params.flush_seconds,
                                    filename_suffix=f".{start_step:010d}.{os.getpid()}")
        if start_step == 0:
            self._write_hparams()

    def _write_hparams(self) -> None:
        from tensorboardX.summary import hparams

        sweep = self.run_dir.read_recipe().get("gankit", {}).get("sweep") or {}
        if sweep:
            # Only the session's own values: TensorBoard builds the experiment from every run's.
            _, session_start, _ = hparams({key: hparam_value(value) for key, value in sweep.items()}, {})
            self.writer.file_writer.add_summary(session_start)


@hookimpl
def register_exporters(register):
    register("tensorboard", TensorBoardExporter, params=TensorBoardParams, requires=("tensorboardX",),
             description="TensorBoard event files: losses, D outputs, scores, sample grids, sweep hparams")
