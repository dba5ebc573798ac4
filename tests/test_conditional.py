"""Class-conditional GANs: labels flow through the shared schedule and updates on both
backends, a conditional run resumes bit-exact, the samples are laid out and drawn by
class, and a conditional recipe on unlabelled data is refused before anything runs."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gankit.cli import main
from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import prepare

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
            for name in ("torch", "tensorflow")]
CONDITIONAL_DCGAN = {"use": "dcgan", "conditional": True, "g_condition": "batchnorm", "d_condition": "projection",
                     "g_start_channels": 16, "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
                     "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}
EVERYTHING = {"loss": "hinge", "ema": 0.8, "ema_warmup": 1, "d_steps": 2, "batch_size": 16,
              "penalties": [{"use": "gp", "weight": 5.0}, {"use": "r1", "weight": 0.5, "every": 2}]}


class Trained:
    """A conditional run's trainer on the tiny real MNIST data, with its labels, stepped by
    the shared schedule."""

    def __init__(self, recipe_path: Path):
        prepared = prepare(load_recipe(recipe_path, [], load_registry()), DataContext(warn=lambda message: None))
        self.trainer, self.schedule = prepared.trainer, prepared.schedule

    def steps(self, start: int, stop: int) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in self.trainer.train_step(self.schedule.batches(step), step).items()}
                for step in range(start, stop)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("architecture", [
    {**CONDITIONAL_DCGAN, "d_spectral_norm": True},
    {"use": "mlp", "conditional": True, "g_condition": "embedding", "d_condition": "onehot", "g_hidden": [32],
     "d_hidden": [32], "d_dropout": 0.0},
], ids=["cbn-projection", "embedding-onehot"])
def test_a_conditional_run_resumes_bit_exact(backend, architecture, write_recipe, tmp_path):
    recipe = write_recipe(architecture=architecture, backend={"use": backend, "device": "cpu"},
                          train={**EVERYTHING, "samples": 20})
    straight = Trained(recipe)
    assert straight.trainer.classes == 10
    losses = straight.steps(0, 4)
    first = Trained(recipe)
    head = first.steps(0, 2)
    first.trainer.save(tmp_path)
    resumed = Trained(recipe)
    resumed.trainer.load(tmp_path)
    assert head + resumed.steps(2, 4) == losses
    np.testing.assert_array_equal(resumed.trainer.fixed_samples(), straight.trainer.fixed_samples())
    labels = np.array([3, 3, 7, 7])
    drawn = straight.trainer.generate(4, 5, labels=labels)
    np.testing.assert_array_equal(resumed.trainer.generate(4, 5, labels=labels), drawn)
    assert not np.array_equal(straight.trainer.generate(4, 5, labels=labels[::-1].copy()), drawn), "the label is ignored"
    assert len(straight.trainer.fixed_samples()) == 20  # two per class


def test_the_labels_change_the_losses(write_recipe):
    """The real labels reach D: shuffling them changes the step."""
    recipe = write_recipe(architecture=CONDITIONAL_DCGAN, train={"steps": 2, "batch_size": 16})
    plain, shuffled = Trained(recipe), Trained(recipe)
    shuffled.trainer.labels = shuffled.trainer.labels.flip(0)
    assert plain.steps(0, 2) != shuffled.steps(0, 2)


def test_a_conditional_recipe_on_unlabelled_data_is_a_one_line_error(write_recipe, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for index in range(4):
        Image.new("L", (28, 28), index * 40).save(folder / f"{index}.png")
    recipe = write_recipe(dataset={"use": "image-folder", "root": str(folder), "size": 28, "channels": 1},
                          architecture={"use": "mlp", "conditional": True, "g_hidden": [8], "d_hidden": [8]},
                          train={"batch_size": 2})
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs)])
    assert result.exit_code == 2
    assert "architecture.conditional needs labelled data, and dataset 'image-folder' gives no classes" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not runs.exists()
    (folder / "sub").mkdir()
    Image.new("L", (28, 28), 255).save(folder / "sub" / "x.png")
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs)])
    assert result.exit_code == 2 and "has unlabelled ones" in result.output and not runs.exists()
