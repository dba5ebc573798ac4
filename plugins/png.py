"""PNG grids of the run's fixed-noise samples: ``samples/step_00000500.png``."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from gankit import hookimpl
from gankit.events import SamplesReady
from gankit.images import grid, write_png
from gankit.params import Every, Interval, Params
from gankit.rundir import RunDir


class PngParams(Params):
    every: Every = Field(Interval(500, "steps"), description="steps (500) or epochs ('1 epoch'); the end is always saved")
    columns: Optional[int] = Field(None, ge=1, le=64,
                                   description="grid width (default: square; a conditional run: one row per class)")


class PngExporter:
    def __init__(self, params: PngParams, run_dir: RunDir):
        self.params, self.run_dir = params, RunDir(run_dir)
        self.sample_every = params.every

    def handle(self, event) -> None:
        if isinstance(event, SamplesReady):
            columns = event.columns or self.params.columns
            write_png(self.run_dir.samples / f"step_{event.step:08d}.png", grid(event.images, columns))


@hookimpl
def register_exporters(register):
    register("png", PngExporter, params=PngParams, requires=("imageio",),
             description="a PNG grid of the fixed-noise samples, every N steps and at the end")
