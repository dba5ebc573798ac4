"""``Architecture.native``: networks written directly in PyTorch (or Keras) train, resume,
sample and evaluate like gankit.nn ones, with the objectives of gankit.updates, and the
other backends refuse them before anything runs."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib.util import find_spec

import numpy as np
import pytest
from click.testing import CliRunner

from gankit import hookimpl, nn
from gankit.cli import main
from gankit.data import DataContext
from gankit.eval_config import EvalConfig
from gankit.events import StepLogged
from gankit.params import Params
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.rundir import RunDir
from gankit.runner import resume, run
from gankit.sampling import Latents, evaluate_run, sample_run

LATENT = 16
HIDDEN = 32


def torch_networks(spec):
    """An MLP GAN written in PyTorch, as a plugin author would: G makes NCHW images, D logits."""
    import torch

    size = spec.channels * spec.height * spec.width
    generator = torch.nn.Sequential(torch.nn.Linear(LATENT, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, size),
                                    torch.nn.Tanh(), torch.nn.Unflatten(1, (spec.channels, spec.height, spec.width)))
    discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, HIDDEN), torch.nn.LeakyReLU(0.2),
                                        torch.nn.Linear(HIDDEN, 1))
    return generator, discriminator


def keras_networks(spec):
    """The same MLP GAN in Keras, NHWC."""
    import keras

    size = spec.channels * spec.height * spec.width
    generator = keras.Sequential([keras.Input((LATENT,)), keras.layers.Dense(HIDDEN, activation="relu"),
                                  keras.layers.Dense(size, activation="tanh"), keras.layers.Reshape(spec.shape)])
    discriminator = keras.Sequential([keras.Input(spec.shape), keras.layers.Flatten(),
                                      keras.layers.Dense(HIDDEN), keras.layers.LeakyReLU(0.2), keras.layers.Dense(1)])
    return generator, discriminator


class NativePlugin:
    """A third-party plugin: one architecture per framework, each given only natively."""

    @hookimpl
    def register_architectures(self, register):
        register("torch-mlp", lambda params, spec: nn.Architecture(LATENT, None, None, native={
            "torch": lambda: torch_networks(spec)}), backends=("torch",), description="an MLP written in PyTorch")
        register("keras-mlp", lambda params, spec: nn.Architecture(LATENT, None, None, native={
            "tensorflow": lambda: keras_networks(spec)}), backends=("tensorflow",), description="an MLP in Keras")


@pytest.fixture
def registry():
    return load_registry([("native", NativePlugin(), "native-test 1.0")])


def native_recipe(write_recipe, registry, architecture: str, backend: str):
    """Hinge loss, an R1 penalty and an EMA generator: the shared objectives all take part."""
    path = write_recipe(architecture={"use": architecture}, backend={"use": backend, "device": "cpu"},
                        train={"loss": "hinge", "penalties": [{"use": "r1", "weight": 1.0}], "ema": 0.9})
    return load_recipe(path, [], registry)


class StopAfterLogged:
    """Asks the run to stop once step ``step`` is logged: it stops after the next one."""

    def __init__(self, step: int):
        self.step, self.seen = step, False

    def handle(self, event) -> None:
        self.seen = self.seen or (isinstance(event, StepLogged) and event.step == self.step)


def train_interrupt_and_resume(recipe, registry, tmp_path):
    """One run straight through, one stopped at step 3 and resumed: both run directories."""
    context = DataContext(warn=lambda message: None)
    straight = run(recipe, runs_root=tmp_path / "straight", context=context)
    stop = StopAfterLogged(2)
    stopped = run(recipe, runs_root=tmp_path / "resumed", context=context, listeners=[stop.handle],
                  should_stop=lambda: stop.seen)
    assert (straight.finished.status, stopped.finished.status, stopped.finished.step) == ("completed", "interrupted", 3)
    resumed = resume(stopped.run_dir, registry, context=context)
    assert resumed.finished.status == "completed"
    return RunDir(straight.run_dir), RunDir(resumed.run_dir)


def logged(run_dir: RunDir) -> list[dict]:
    rows = [json.loads(line) for line in run_dir.metrics.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "images_per_sec"} for row in rows]


def assert_resumed_exactly(straight: RunDir, resumed: RunDir, registry, tmp_path):
    assert logged(straight) == logged(resumed)
    drawn = []
    for run_dir in (straight, resumed):
        output = tmp_path / f"{run_dir.path.parent.name}.npz"
        assert sample_run(registry, run_dir.path, Latents(count=10, seed=1), output) == (run_dir.checkpoint(6), 10)
        drawn.append(np.load(output)["images"])
    np.testing.assert_array_equal(*drawn)
    assert drawn[0].shape == (10, 28, 28, 1) and drawn[0].std() > 0


@pytest.mark.parametrize("architecture, backend", [
    pytest.param("torch-mlp", "torch", marks=pytest.mark.skipif(find_spec("torch") is None, reason="no torch")),
    pytest.param("keras-mlp", "tensorflow",
                 marks=pytest.mark.skipif(find_spec("tensorflow") is None, reason="no tensorflow")),
])
def test_a_native_architecture_trains_resumes_samples_and_evaluates(architecture, backend, write_recipe, registry,
                                                                    tmp_path):
    recipe = native_recipe(write_recipe, registry, architecture, backend)
    straight, resumed = train_interrupt_and_resume(recipe, registry, tmp_path)
    assert_resumed_exactly(straight, resumed, registry, tmp_path)
    summary = json.loads(straight.summary.read_text())
    assert summary["parameters"] == {"generator": LATENT * HIDDEN + HIDDEN + HIDDEN * 784 + 784,
                                     "discriminator": 784 * HIDDEN + HIDDEN + HIDDEN + 1}
    assert {"d_r1", "d_loss", "g_loss"} <= set(json.loads(straight.metrics.read_text().splitlines()[-1]))
    assert len(straight.sample_images()) == 2 and (straight / "progress.gif").is_file()

    pytest.importorskip("torch_fidelity")
    record = evaluate_run(registry, straight.path, EvalConfig(metrics=["fid"], features={"use": "domain", "steps": 20},
                                                                  n=64), info=lambda _: None, warn=lambda _: None)
    assert record["generated"] == {"count": 64, "seed": 0, "backend": backend, "generator": "ema"}
    assert record["scores"]["fid"] > 0


def test_other_backends_refuse_a_native_architecture_in_one_line_at_dry_run(write_recipe, registry, monkeypatch):
    monkeypatch.setattr("gankit.plugins.load_registry", lambda *args, **kwargs: registry)
    recipe = write_recipe(architecture={"use": "torch-mlp"})
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "backend.use=tensorflow", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {recipe}: backend.use: architecture 'torch-mlp' gives networks for the torch backend(s) only, "
        "not 'tensorflow'; set backend.use = 'torch'"]
    assert CliRunner().invoke(main, ["run", str(recipe), "--dry-run"]).exit_code == 0


def test_a_native_network_of_the_wrong_shape_is_one_line_before_training(write_recipe, registry, tmp_path):
    pytest.importorskip("torch")
    import torch

    from gankit.rundir import RunError

    class WrongShape:
        @hookimpl
        def register_architectures(self, register):
            register("too-small", lambda params, spec: nn.Architecture(LATENT, None, None, native={"torch": lambda: (
                torch.nn.Sequential(torch.nn.Linear(LATENT, 4 * 4), torch.nn.Unflatten(1, (1, 4, 4))),
                torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1)))}),
                backends=("torch",), description="makes 4x4 images")

    registry = load_registry([("wrong", WrongShape(), "wrong 1.0")])
    recipe = load_recipe(write_recipe(architecture={"use": "too-small"}), [], registry)
    with pytest.raises(RunError, match=r"backend: the native generator makes \(4, 4, 1\) images \(H, W, C\) but "
                                       r"the data is \(28, 28, 1\)"):
        run(recipe, runs_root=tmp_path / "runs", context=DataContext(warn=lambda message: None))
    assert not (tmp_path / "runs").exists()


class VariantParams(Params):
    native: bool = False


def mlp_description(spec, classes: int = 0) -> nn.Architecture:
    """A gankit.nn MLP GAN, conditional when ``classes``."""
    size = spec.channels * spec.height * spec.width
    join = (nn.JoinClass(8),) if classes else ()
    generator = nn.Network((LATENT,), (*join, nn.Dense(size), nn.Tanh(), nn.Reshape(spec.shape)), classes=classes)
    discriminator = nn.Network(spec.shape, (nn.Flatten(), nn.Dense(1)))
    return nn.Architecture(LATENT, generator, discriminator)


class OutsideVariants:
    """What an outside author writes: a native variant one parameter picks, a conditional
    description with a native variant, and a native builder with the wrong signature."""

    @hookimpl
    def register_architectures(self, register):
        def variant(params, spec):
            described = mlp_description(spec)
            return replace(described, native={"torch": lambda: torch_networks(spec)} if params.native else {})

        register("variant", variant, params=VariantParams, description="gankit.nn, or natively in PyTorch",
                 backends=lambda params: ("torch",) if params.native else None)
        register("conditional-native", lambda params, spec: replace(
            mlp_description(spec, classes=10), native={"torch": lambda: torch_networks(spec)}),
            description="a conditional description with a native variant")
        register("wrong-builder", lambda params, spec: nn.Architecture(LATENT, None, None, native={
            "torch": lambda spec: torch_networks(spec)}), backends=("torch",), description="build() takes an argument")


@pytest.fixture
def outside(monkeypatch):
    registry = load_registry([("outside", OutsideVariants(), "outside-variants 0.1")])
    monkeypatch.setattr("gankit.plugins.load_registry", lambda *args, **kwargs: registry)
    return registry


def test_backend_support_that_depends_on_a_parameter_is_refused_at_dry_run(write_recipe, outside):
    recipe = write_recipe(architecture={"use": "variant", "native": True})
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "backend.use=tensorflow", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {recipe}: backend.use: architecture 'variant' gives networks for the torch backend(s) only, "
        "not 'tensorflow'; set backend.use = 'torch'"]
    described = ["run", str(recipe), "--set", "architecture.native=false", "--set", "backend.use=tensorflow",
                 "--dry-run"]
    assert CliRunner().invoke(main, described).exit_code == 0
    listed = CliRunner().invoke(main, ["list-plugins", "--json"])
    found = [c for c in json.loads(listed.output)["plugins"] if c["name"] == "variant"]
    assert found[0]["backends"] == "by its parameters"


@pytest.mark.skipif(find_spec("torch") is None, reason="no torch")
@pytest.mark.parametrize("architecture, said", [
    ("wrong-builder", "its native torch builder failed: TypeError: "),
    ("conditional-native", "its native torch networks would train without the classes its gankit.nn description "
                           "draws (native networks are given no labels); make it unconditional"),
])
def test_a_fault_in_an_architectures_native_code_is_named_as_the_architectures(architecture, said, write_recipe,
                                                                               outside, tmp_path):
    recipe = write_recipe(architecture={"use": architecture}, train={"steps": 2})
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {recipe}: architecture: architecture {architecture!r} (outside-variants 0.1): "
                           f"{said}"), line
    assert "backend 'torch'" not in line
