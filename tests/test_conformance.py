"""The bundled plugins pass the same conformance checks (gankit.testing) a third party's must."""

from __future__ import annotations

import json

import pytest

from conftest import install_outside_package
from gankit.data import DataSpec
from gankit.plugins import load_registry
from gankit.testing import (check_architecture, check_backend, check_dataset, check_exporter, check_metric,
                            installed_backends)

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(name not in installed_backends(), reason=f"{name} not installed"))
            for name in ("torch", "tensorflow")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_passes_the_backend_checks(backend):
    check_backend(backend)


SMALL_DCGAN = {"g_start_channels": 8, "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}]}


@pytest.mark.parametrize("name, params, spec", [
    ("mlp", {"g_hidden": [16], "d_hidden": [16]}, DataSpec(28, 28, 1, 10)),
    ("dcgan", SMALL_DCGAN, DataSpec(16, 16, 3)),
])
def test_each_architecture_builds_fits_and_trains_on_every_backend(name, params, spec):
    counts = check_architecture(name, params, spec=spec)
    assert set(counts) == set(installed_backends())


def test_a_conditional_architecture_trains_on_the_kits_labelled_data():
    """With the default 10 classes: the fixed grid is 6 rows of each class, not 64 images."""
    counts = check_architecture("dcgan", {"conditional": True})
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


def test_check_exporter_finds_its_own_run_in_a_reused_directory(tmp_path):
    first = check_exporter("png", tmp_path, {"every": 1})
    second = check_exporter("png", tmp_path, {"every": 1})
    assert first != second and first.parent == second.parent == tmp_path / "runs"
    assert len(list((second / "samples").glob("step_*.png"))) == 4


JOURNAL = """
from gankit import hookimpl
from gankit.events import RunFinished, RunStarted, StepLogged


class Journal:
    \"\"\"Writes down each event it gets, one line each, appended as it comes.\"\"\"

    sample_every = None

    def __init__(self, params, run_dir):
        self.path = run_dir.path / "journal.txt"

    def handle(self, event) -> None:
        line = {RunStarted: lambda e: f"start {e.start_step}", StepLogged: lambda e: f"step {e.step}",
                RunFinished: lambda e: f"finish {e.status}"}.get(type(event))
        if line is not None:
            with self.path.open("a") as handle:
                handle.write(line(event) + "\\n")


class FirstSessionOnly(Journal):
    def handle(self, event) -> None:
        if isinstance(event, RunStarted) and event.start_step:
            raise RuntimeError("no file to continue")


@hookimpl
def register_exporters(register):
    register("journal", Journal, description="the events, one line each")
    register("once", FirstSessionOnly, description="fails to resume")
"""


@pytest.fixture
def journal(tmp_path, monkeypatch):
    """The outside package gankit-journal installed: exporters journal and once."""
    site = install_outside_package(tmp_path / "site", "gankit-journal", "gankit_journal", JOURNAL,
                                   {"journal": "gankit_journal"})
    monkeypatch.syspath_prepend(str(site))


def test_check_exporter_stops_the_run_as_ctrl_c_does_then_kills_a_resumed_session_and_resumes_again(tmp_path,
                                                                                                 journal):
    """The killed session logs steps 4 and 5 and ends with no event; the last session
    trains them again from the checkpoint at step 3."""
    run_dir = check_exporter("journal", tmp_path, steps=6)
    assert (run_dir / "journal.txt").read_text().split("\n") == [
        "start 0", "step 1", "step 2", "step 3", "finish interrupted",
        "start 3", "step 4", "step 5",
        "start 3", "step 4", "step 5", "step 6", "finish completed", ""]


def test_an_exporter_that_cannot_resume_fails_the_exporter_check(tmp_path, journal):
    failed = r"^the resumed session ended failed at step 3, not completed at 4: exporter 'once' failed .*" \
             r"\(RuntimeError: no file to continue\)"
    with pytest.raises(AssertionError, match=failed):
        check_exporter("once", tmp_path)


METRICS = sorted(c.name for c in load_registry().of_kind("metric") if c.provider == "builtin")


@pytest.mark.parametrize("name", METRICS)
def test_each_metric_passes_the_metric_checks(name):
    scores = check_metric(name)
    assert name in scores["identical"] and scores["identical"].keys() == scores["disjoint"].keys()


def test_the_bundled_metrics_are_found_to_be_checked():
    assert {"fid", "intra_fid", "kid", "is", "precision", "recall", "density", "coverage"} <= set(METRICS)


def test_a_metric_is_checked_with_its_parameters():
    assert check_metric("precision", {"k": 5}, scores=["precision"])["disjoint"] == {"precision": 0.0}
    with pytest.raises(AssertionError, match=r"scores \['kid', 'kid_std'\], expected \['kid'\]"):
        check_metric("kid", {"subsets": 10}, scores=["kid"])


class Distance:
    """The distance between the features' means: lower is better."""

    uses_real = True
    higher_is_better = False

    def __init__(self, params):
        pass

    def describe(self):
        return {"function": "distance between the means"}

    def compute(self, fake, real, seed):
        import numpy as np

        return {"gap": float(np.linalg.norm(fake.features.mean(0) - real.features.mean(0)))}


class Upside(Distance):
    higher_is_better = True


class Unseeded(Distance):
    def compute(self, fake, real, seed):
        import numpy as np

        return {"gap": super().compute(fake, real, seed)["gap"] + np.random.default_rng().random()}


class Infinite(Distance):
    def compute(self, fake, real, seed):
        return {"gap": float("inf")}


class Misnamed(Distance):
    def compute(self, fake, real, seed):
        return {"distance": super().compute(fake, real, seed)["gap"]}


class Centring(Distance):
    def compute(self, fake, real, seed):
        fake.features[:] -= fake.features.mean(0)
        return super().compute(fake, real, seed)


class NeedsLabels(Distance):
    def compute(self, fake, real, seed):
        return {"gap": super().compute(fake, real, seed)["gap"] + float(fake.labels.max())}


class Unrecordable(Distance):
    def describe(self):
        return {"function": Distance}


@pytest.mark.parametrize("metric, message", [
    (Upside, r"identical feature sets score gap = 0, disjoint ones 40(\.\d+)?, so higher_is_better = True looks wrong"),
    (Unseeded, "the same features and seed gave gap = .*; draw any randomness from compute's seed"),
    (Infinite, "score 'gap' is inf, not a finite number"),
    (Misnamed, r"no score named 'gap' \(its headline, which picks a run's best checkpoint\) among \['distance'\]"),
    (Centring, "changed the features it was given"),
    (NeedsLabels, "generated features without labels: compute raised AttributeError"),
    (Unrecordable, "describe\\(\\) is recorded in eval.json, and is not JSON"),
])
def test_a_broken_metric_fails_the_metric_check_saying_what_is_wrong(metric, message):
    with pytest.raises(AssertionError, match=f"metric 'gap'.*{message}"):
        check_metric("gap", registry=metric_registry(metric))


def test_the_unbroken_metric_those_are_made_from_passes():
    assert check_metric("gap", registry=metric_registry(Distance))["identical"] == {"gap": 0.0}


def metric_registry(metric):
    from gankit import hookimpl

    class Plugin:
        @hookimpl
        def register_metrics(self, register):
            register("gap", metric, description="distance between the means")

    return load_registry([("gap", Plugin(), "gap 0.1")])
