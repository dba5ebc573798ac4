"""``progress.gif``: the run's sample grids in step order, written when the run ends.

It reads the grids the ``png`` exporter wrote, so a resumed run's GIF covers the whole run;
it says so (``needs_exporters``), and a recipe with ``gif`` but no ``png`` is refused.
"""

from __future__ import annotations


from pydantic import Field

from gankit import hookimpl
from gankit.events import RunFinished
from gankit.files import write_bytes
from gankit.images import gif_bytes
from gankit.params import Params
from gankit.rundir import RunDir

PROGRESS_GIF = "progress.gif"


class GifParams(Params):
    frame_seconds: float = Field(0.25, gt=0, le=10, description="how long each grid shows")
    hold_last_seconds: float = Field(1.0, gt=0, le=60, description="how long the last grid stays")
    loop: int = Field(0, ge=0, description="0 loops forever")


class GifExporter:
    sample_every = None
    needs_exporters = ("png",)

    def __init__(self, params: GifParams, run_dir: RunDir):
        self.params, self.run_dir = params, RunDir(run_dir)

    def handle(self, event) -> None:
        if isinstance(event, RunFinished):
            self.write()

    def write(self) -> None:
        import imageio.v3 as iio

        paths = self.run_dir.sample_images()
        if not paths:
            return
        frames = [iio.imread(path) for path in paths]
        durations = [self.params.frame_seconds * 1000] * (len(frames) - 1) + [self.params.hold_last_seconds * 1000]
        write_bytes(self.run_dir / PROGRESS_GIF, gif_bytes(frames, durations, self.params.loop))


@hookimpl
def register_exporters(register):
    register("gif", GifExporter, params=GifParams, requires=("imageio",),
             description="progress.gif of the png exporter's sample grids, at the end of the run")
