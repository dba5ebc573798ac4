"""gankit-example-plugin: a gankit plugin providing an architecture, a dataset, an exporter and a metric.

Every component declares its parameters with ranges (gankit.params.Params), so a mistake
in a recipe is a one-line error before anything runs; gankit's docs/plugins.md is the
reference for the hooks used here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from pydantic import Field

from gankit import hookimpl, nn
from gankit.data import DataContext, DataError, ImageData
from gankit.evaluation import Features
from gankit.events import CheckpointSaved, RunFinished, RunStarted, StepLogged
from gankit.files import write_text
from gankit.params import Params

GANKIT_API = ">=1,<2"
"""The gankit plugin API versions this plugin is written for."""


class ExamplePluginArchitectureParams(Params):
    latent_dim: int = Field(32, ge=1, le=1024, description="size of the noise vector")
    width: int = Field(128, ge=8, le=4096, description="units in each network's hidden layer")
    slope: float = Field(0.2, ge=0, lt=1, description="negative slope of the discriminator's LeakyReLU")


def build_architecture(params: ExamplePluginArchitectureParams, spec) -> nn.Architecture:
    """An MLP generator and discriminator for the dataset's images (``spec.shape``: H, W, C).
    Described with gankit.nn, so it runs on every backend."""
    pixels = spec.height * spec.width * spec.channels
    generator = nn.Network((params.latent_dim,), (
        nn.Dense(params.width), nn.BatchNorm(), nn.ReLU(),
        nn.Dense(pixels), nn.Tanh(), nn.Reshape(spec.shape),  # images in [-1, 1]
    ))
    discriminator = nn.Network(spec.shape, (
        nn.Flatten(), nn.Dense(params.width), nn.LeakyReLU(params.slope),
        nn.Dense(1),  # a logit: the losses apply the sigmoid
    ))
    return nn.Architecture(params.latent_dim, generator, discriminator)


@hookimpl
def register_architectures(register):
    register("example-plugin", build_architecture, params=ExamplePluginArchitectureParams,
             description="an MLP generator and discriminator for any image size")


class ExamplePluginDatasetParams(Params):
    count: int = Field(512, ge=16, le=100_000, description="images in the train split; the test split has a quarter as many")
    size: int = Field(16, ge=8, le=128, description="side of the square images, in pixels")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="the images are made from this seed")


class ExamplePluginDataset:
    """Light squares on a dark background, one per image, labelled by the quadrant their
    centre is in. Made from the seed: no files, no download."""

    CLASSES = ("top-left", "top-right", "bottom-left", "bottom-right")

    def __init__(self, params: ExamplePluginDatasetParams, context: DataContext):
        self.params = params

    def load(self, split: str) -> ImageData:
        if split not in ("train", "test"):
            raise DataError(f"no {split!r} split; use train or test")
        count = self.params.count if split == "train" else self.params.count // 4
        size, side = self.params.size, self.params.size // 4
        rng = np.random.default_rng([self.params.seed, 0 if split == "train" else 1])
        corners = rng.integers(0, size - side + 1, (count, 2))
        images = np.zeros((count, size, size, 1), np.uint8)
        for image, (row, column) in zip(images, corners):
            image[row:row + side, column:column + side] = 255
        centres = corners + side / 2
        labels = (centres[:, 0] >= size / 2) * 2 + (centres[:, 1] >= size / 2)
        return ImageData(images, labels.astype(np.int64), source=f"{count} squares made from seed {self.params.seed}",
                         class_names=self.CLASSES)


@hookimpl
def register_datasets(register):
    register("example-plugin", ExamplePluginDataset, params=ExamplePluginDatasetParams,
             description="generated squares labelled by quadrant (no download)")


class ExamplePluginExporterParams(Params):
    filename: str = Field("losses.csv", pattern=r"^[\w][\w.-]*\.csv$", description="the CSV file in the run directory")
    every: int = Field(1, ge=1, le=1_000_000, description="keep the steps logged at multiples of this")


class ExamplePluginExporter:
    """The run's logged values as CSV rows, one per logged step. The file is rewritten
    atomically at each checkpoint and at the end; a resumed run keeps the rows up to the
    step it resumes from, so no step appears twice."""

    sample_every = None  # no sample grids needed

    def __init__(self, params: ExamplePluginExporterParams, run_dir: Path):
        self.path, self.every = run_dir / params.filename, params.every
        self.rows: list[dict[str, float]] = []

    def handle(self, event) -> None:
        if isinstance(event, RunStarted):
            self.rows = [row for row in self._read() if row["step"] <= event.start_step]
        elif isinstance(event, StepLogged) and event.step % self.every == 0:
            self.rows.append({"step": event.step, **event.values})
        elif isinstance(event, (CheckpointSaved, RunFinished)):
            self._write()

    def _read(self) -> list[dict[str, float]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            return [{key: float(value) for key, value in row.items() if value != ""} for row in csv.DictReader(handle)]

    def _write(self) -> None:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "step": int(row["step"])} for row in self.rows)
        write_text(self.path, buffer.getvalue())


@hookimpl
def register_exporters(register):
    register("example-plugin", ExamplePluginExporter, params=ExamplePluginExporterParams,
             description="the logged losses as a CSV file in the run directory")


class ExamplePluginMetricParams(Params):
    order: int = Field(2, ge=1, le=8, description="of the norm the gap between the means is measured with")


class ExamplePluginMetric:
    """The gap between the generated and the real features' means, in units of the real
    features' spread (their root-mean-square distance from their mean): 0 for identical
    sets, lower is better. A quick look beside FID, blind to how the features spread."""

    uses_real = True
    higher_is_better = False

    def __init__(self, params: ExamplePluginMetricParams):
        self.params = params

    def describe(self) -> dict:
        return {"library": f"numpy {np.__version__}", "function": "norm(mean(fake) - mean(real)) / spread(real)",
                **self.params.model_dump()}

    def compute(self, fake: Features, real: Features, seed: int) -> dict[str, float]:
        generated, reference = (np.asarray(f.features, np.float64) for f in (fake, real))
        centre = reference.mean(0)
        spread = np.sqrt(((reference - centre) ** 2).sum(1).mean())
        gap = np.linalg.norm(generated.mean(0) - centre, ord=self.params.order)
        return {"example-plugin": float(gap / max(spread, 1e-12))}  # the score named like the metric is its headline


@hookimpl
def register_metrics(register):
    register("example-plugin", ExamplePluginMetric, params=ExamplePluginMetricParams,
             description="gap between the generated and real features' means, over the real spread (lower is better)")
