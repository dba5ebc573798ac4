"""An outside package of every kind, written from docs/plugins.md alone, installed as pip
leaves a package, passes gankit.testing's check for its kind."""

from __future__ import annotations

import sys
from importlib.util import find_spec

import pytest

from conftest import install_outside_package

ARCHITECTURES = '''
from pydantic import Field

from gankit import hookimpl, nn
from gankit.params import Params


class WideParams(Params):
    width: int = Field(32, ge=1, description="hidden units")
    conditional: bool = Field(False, description="draw the class asked for")


def wide(params, spec):
    classes = spec.classes if params.conditional else 0
    size = spec.height * spec.width * spec.channels
    join = (nn.JoinClass(8),) if classes else ()
    generator = nn.Network((16,), (*join, nn.Dense(params.width), nn.ReLU(), nn.Dense(size), nn.Tanh(),
                                   nn.Reshape(spec.shape)), classes=classes)
    head = (nn.Projection(),) if classes else (nn.Dense(1),)
    discriminator = nn.Network(spec.shape, (nn.Flatten(), nn.Dense(params.width), nn.LeakyReLU(0.2), *head),
                               classes=classes)
    return nn.Architecture(16, generator, discriminator)


def torch_mlp(params, spec):
    def build():
        import torch

        size = spec.height * spec.width * spec.channels
        generator = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, size),
                                        torch.nn.Tanh(), torch.nn.Unflatten(1, (spec.channels, spec.height, spec.width)))
        discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, 32), torch.nn.LeakyReLU(0.2),
                                            torch.nn.Linear(32, 1))
        return generator, discriminator

    return nn.Architecture(16, None, None, native={"torch": build})


@hookimpl
def register_architectures(register):
    register("outside-wide", wide, params=WideParams, description="an MLP, conditional on request")
    register("outside-torch-mlp", torch_mlp, backends=("torch",), requires=("torch",),
             description="an MLP written in PyTorch")
'''

DATASET = '''
import numpy as np
from pydantic import Field

from gankit import hookimpl
from gankit.data import DataError, ImageData
from gankit.params import Params


class StripesParams(Params):
    count: int = Field(64, ge=1, description="images per split")


class Stripes:
    """Horizontal or vertical stripes, 16x16 greyscale, labelled by direction."""

    def __init__(self, params, context):
        self.params = params

    def load(self, split):
        if split not in ("train", "test"):
            raise DataError(f"no split {split!r}; use train or test")
        rng = np.random.default_rng(0 if split == "train" else 1)
        labels = rng.integers(0, 2, self.params.count)
        rows = (np.arange(16) // 2 % 2 * 255).astype(np.uint8)
        horizontal = np.repeat(rows[:, None], 16, axis=1)
        images = np.where(labels[:, None, None] == 0, horizontal, horizontal.T)[..., None]
        return ImageData(images.astype(np.uint8), labels.astype(np.int64), "stripes",
                         class_names=("horizontal", "vertical"))


@hookimpl
def register_datasets(register):
    register("outside-stripes", Stripes, params=StripesParams, description="stripes, two classes")
'''

EXPORTER = '''
from gankit import hookimpl
from gankit.events import RunStarted, StepLogged
from gankit.files import write_text


class LossesCsv:
    """losses.csv: one row per logged step, rewritten whole at each so a resume after a
    kill leaves no step twice."""

    sample_every = None

    def __init__(self, params, run_dir):
        self.path = run_dir / "losses.csv"
        self.rows = {}

    def handle(self, event):
        if isinstance(event, RunStarted) and self.path.is_file():
            lines = self.path.read_text().splitlines()[1:]
            self.rows = {int(line.split(",")[0]): line for line in lines
                         if int(line.split(",")[0]) <= event.start_step}
        elif isinstance(event, StepLogged):
            self.rows[event.step] = f"{event.step},{event.values['d_loss']:.6f},{event.values['g_loss']:.6f}"
            write_text(self.path, "step,d_loss,g_loss\\n" + "".join(self.rows[step] + "\\n" for step in sorted(self.rows)))


@hookimpl
def register_exporters(register):
    register("outside-csv", LossesCsv, description="the losses as CSV")
'''

METRIC = '''
import numpy as np

from gankit import hookimpl


class MeanGap:
    """The distance between the feature means, over the real features' spread."""

    uses_real = True
    higher_is_better = False
    scores = ("mean_gap",)

    def __init__(self, params):
        pass

    def describe(self):
        return {"function": "|mean(fake) - mean(real)| / mean(std(real))", "library": f"numpy {np.__version__}"}

    def compute(self, fake, real, seed):
        gap = np.linalg.norm(fake.features.mean(0) - real.features.mean(0))
        return {"mean_gap": float(gap / (real.features.std(0).mean() + 1e-12))}


@hookimpl
def register_metrics(register):
    register("mean_gap", MeanGap, description="feature mean gap (lower is better)")
'''

BACKEND = '''
from gankit import hookimpl
from gankit.backend import lazy_backend
from gankit_plugins.torch_backend import TorchParams


def trainer():
    from gankit_plugins.torch_backend.trainer import TorchTrainer

    return TorchTrainer


@hookimpl
def register_backends(register):
    register("outside-torch", lazy_backend(trainer), params=TorchParams, requires=("torch",),
             description="the bundled torch trainer under another name, as a package of its own would ship one")
'''

PACKAGES = {
    "outside-architectures": ("outside_architectures", ARCHITECTURES),
    "outside-dataset": ("outside_dataset", DATASET),
    "outside-exporter": ("outside_exporter", EXPORTER),
    "outside-metric": ("outside_metric", METRIC),
    "outside-backend": ("outside_backend", BACKEND),
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Every package above installed as pip would, for this module's tests."""
    root = tmp_path_factory.mktemp("outside-site")
    folders = [str(install_outside_package(root, dist, module, source, {dist: module}))
               for dist, (module, source) in PACKAGES.items()]
    sys.path[:0] = folders
    yield
    for folder in folders:
        sys.path.remove(folder)
    for _, (module, _) in PACKAGES.items():
        sys.modules.pop(module, None)


needs_torch = pytest.mark.skipif(find_spec("torch") is None, reason="torch is not installed")
pytestmark = [pytest.mark.usefixtures("installed", "one_torch_thread")]


def test_an_outside_architecture_passes_its_check():
    from gankit.testing import check_architecture

    counts = check_architecture("outside-wide", {"width": 16})
    assert counts


def test_an_outside_conditional_architecture_passes_its_check():
    from gankit.testing import check_architecture

    assert check_architecture("outside-wide", {"width": 16, "conditional": True})


@needs_torch
def test_an_outside_native_architecture_passes_its_check():
    from gankit.testing import check_architecture

    assert set(check_architecture("outside-torch-mlp")) == {"torch"}


def test_an_outside_dataset_passes_its_check():
    from gankit.testing import check_dataset

    loaded = check_dataset("outside-stripes", {"count": 32}, splits=("train", "test"))
    assert loaded["train"].images.shape == (32, 16, 16, 1)


def test_an_outside_exporter_passes_its_check(tmp_path):
    from gankit.testing import check_exporter

    run_dir = check_exporter("outside-csv", tmp_path)
    rows = (run_dir / "losses.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [1, 2, 3, 4]


def test_an_outside_metric_passes_its_check():
    from gankit.testing import check_metric

    assert check_metric("mean_gap")


@needs_torch
def test_an_outside_backend_passes_its_check():
    from gankit.testing import check_backend

    check_backend("outside-torch")
