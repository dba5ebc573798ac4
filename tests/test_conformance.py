"""The bundled plugins pass the same conformance checks (gankit.testing) a third party's must."""

from __future__ import annotations

import json

import pytest

from gankit.data import DataSpec
from gankit.plugins import load_registry
from gankit.testing import check_architecture, check_backend, check_dataset, check_exporter, installed_backends

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(name not in installed_backends(), reason=f"{name} not installed"))
            for name in ("torch", "tensorflow")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_passes_the_backend_checks(backend):
    check_backend(backend)


@pytest.mark.parametrize("name, params, spec", [
    ("mlp", {"g_hidden": [16], "d_hidden": [16]}, DataSpec(28, 28, 1, 10)),
    ("dcgan", {"g_start_channels": 8, "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}]}, DataSpec(16, 16, 3)),
])
def test_each_architecture_builds_fits_and_trains_on_every_backend(name, params, spec):
    counts = check_architecture(name, params, spec=spec)
    assert set(counts) == set(installed_backends())


def test_mnist_loads_what_the_hook_promises(tiny_mnist):
    loaded = check_dataset("mnist", {"root": str(tiny_mnist), "download": False}, splits=("train", "test"))
    assert loaded["train"].images.shape == (256, 28, 28, 1) and loaded["train"].class_names


def test_png_and_gif_survive_a_run_and_a_resume(tmp_path):
    run_dir = check_exporter("gif", tmp_path, with_exporters=[{"use": "png", "every": 1}])
    assert len(list((run_dir / "samples").glob("step_*.png"))) == 4 and (run_dir / "progress.gif").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


def test_a_check_fails_saying_what_is_wrong():
    from gankit import hookimpl, nn

    class Misfit:
        @hookimpl
        def register_architectures(self, register):
            generator = nn.Network((4,), (nn.Dense(10), nn.Reshape((10, 1, 1))))
            discriminator = nn.Network((28, 28, 1), (nn.Flatten(), nn.Dense(1)))
            register("misfit", lambda params, spec: nn.Architecture(4, generator, discriminator),
                     description="makes 10x1 images")

    registry = load_registry([("misfit", Misfit(), "misfit 0.1")])
    with pytest.raises(AssertionError, match="architecture 'misfit' does not fit .* the generator makes"):
        check_architecture("misfit", registry=registry)


@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_a_backend_that_forgets_its_optimizers_on_resume_fails_the_backend_check(backend):
    from gankit import hookimpl

    real = load_registry().get("backend", backend)

    class Forgetful:
        """The real backend, except that load() restores only the generator."""

        def __init__(self, params):
            self.inner = real.factory(params)

        def trainer(self, *args):
            trainer = self.inner.trainer(*args)
            load = trainer.load
            trainer.load = lambda directory, generator_only=False: load(directory, generator_only=True)
            return trainer

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register("forgetful", Forgetful, params=real.params, description="forgets")

    registry = load_registry([("forgetful", Plugin(), "forgetful 0.1")])
    with pytest.raises(AssertionError, match="a resumed run's losses differ"):
        check_backend("forgetful", registry=registry)
