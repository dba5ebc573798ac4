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
from gankit.data import DataContext, DataSpec
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
    {"use": "resnet", "conditional": True, "g_channels": 8, "d_channels": 8},
], ids=["cbn-projection", "embedding-onehot", "resnet"])
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
    assert ("architecture: conditional = true needs labelled data, and this dataset gives no classes; "
            "set conditional = false") in result.output
    assert len(result.output.strip().splitlines()) == 1 and not runs.exists()
    (folder / "sub").mkdir()
    Image.new("L", (28, 28), 255).save(folder / "sub" / "x.png")
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs)])
    assert result.exit_code == 2 and "has unlabelled ones" in result.output and not runs.exists()


@pytest.fixture(scope="module")
def conditional_run(tiny_mnist, tmp_path_factory) -> Path:
    """A tiny conditional MLP GAN trained briefly (300 steps, seconds) on 256 real MNIST
    images: enough for its digits to be told apart by the run's domain classifier."""
    import tomli_w

    from conftest import recipe_dict

    folder = tmp_path_factory.mktemp("conditional")
    recipe = recipe_dict(tiny_mnist, architecture={"use": "mlp", "conditional": True, "g_condition": "onehot",
                                                   "g_hidden": [128], "d_hidden": [128], "d_dropout": 0.0},
                         train={"steps": 300, "batch_size": 32, "lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.5, 0.999],
                                "log_every": 100, "checkpoint_every": 0, "samples": 20},
                         export=[{"use": "png", "every": 150}, {"use": "gif"}])
    path = folder / "conditional.toml"
    path.write_text(tomli_w.dumps(recipe))
    result = CliRunner().invoke(main, ["run", str(path), "--runs-dir", str(folder / "runs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return next((folder / "runs").iterdir())


def domain_classes(run_dir: Path, images: np.ndarray) -> np.ndarray:
    """The label the run's domain classifier (the one ``gankit evaluate`` trains) gives each image."""
    from gankit.eval_config import EvalConfig
    from gankit.scoring import Evaluator, resolve_plan
    from gankit.runner import load_generator

    registry = load_registry()
    recipe = load_generator(registry, run_dir)[0]
    plan = resolve_plan(EvalConfig(metrics=["is"], features="domain", n=len(images), seed=0), registry)
    extractor = Evaluator(plan, recipe, info=lambda message: None, warn=lambda message: None).extractor
    return np.asarray(extractor.class_labels)[extractor.extract(images).logits.argmax(1)]


def test_the_fixed_grid_has_one_row_per_class(conditional_run):
    import imageio.v3 as iio

    grid = iio.imread(conditional_run / "samples" / "step_00000300.png")
    assert grid.shape[:2] == (10 * 30 + 2, 2 * 30 + 2)  # 10 rows of 2 images of 28 pixels, 2-pixel borders
    assert iio.imread(conditional_run / "progress.gif").shape[1:3] == grid.shape[:2]


def test_evaluate_reports_class_accuracy_overall_and_per_class(conditional_run):
    import json

    result = CliRunner().invoke(main, ["evaluate", str(conditional_run), "--metric", "is", "-n", "200"])
    assert result.exit_code == 0, result.output
    record = json.loads((conditional_run / "eval.json").read_text())["evaluations"]["domain"]
    accuracy = record["class_accuracy"]
    assert set(accuracy["per_class"]) == {str(digit) for digit in range(10)} and accuracy["images_per_class"] == 20
    assert record["scores"]["class_accuracy"] == accuracy["overall"] == pytest.approx(
        np.mean(list(accuracy["per_class"].values())))
    assert accuracy["overall"] >= 0.6, accuracy  # chance is 0.1
    assert f"class accuracy │ {accuracy['overall']:.1%}" in result.output
    assert "per class   0 " in result.output and f"9 {accuracy['per_class']['9']:.0%}" in result.output


def test_sample_class_draws_that_class(conditional_run, tmp_path):
    drawn = {}
    for chosen in ("7", "3"):
        out = tmp_path / f"{chosen}.npz"
        result = CliRunner().invoke(main, ["sample", str(conditional_run), "-n", "30", "--class", chosen, "-o", str(out)])
        assert result.exit_code == 0, result.output
        with np.load(out) as stored:
            assert stored["labels"].tolist() == [int(chosen)] * 30
            drawn[chosen] = domain_classes(conditional_run, stored["images"])
    assert np.mean(drawn["7"] == 7) >= 0.7 and np.mean(drawn["3"] == 3) >= 0.7, drawn
    out = tmp_path / "two.npz"
    result = CliRunner().invoke(main, ["sample", str(conditional_run), "-n", "4", "--class", "1", "--class", "0",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as stored:
        assert stored["labels"].tolist() == [1, 1, 0, 0]


def test_sample_without_class_draws_every_class_evenly(conditional_run, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "all.npz"
    assert CliRunner().invoke(main, ["sample", str(conditional_run), "-n", "64", "-o", str(out)]).exit_code == 0
    with np.load(out) as stored:
        assert np.bincount(stored["labels"]).tolist() == [7] * 4 + [6] * 6
    png = tmp_path / "all.png"
    assert CliRunner().invoke(main, ["sample", str(conditional_run), "-n", "20", "-o", str(png)]).exit_code == 0
    assert iio.imread(png).shape[:2] == (10 * 30 + 2, 2 * 30 + 2)
    one = tmp_path / "sevens.png"
    assert CliRunner().invoke(main, ["sample", str(conditional_run), "--class", "7", "-n", "16", "-o", str(one)]).exit_code == 0
    assert iio.imread(one).shape[:2] == (4 * 30 + 2, 4 * 30 + 2)  # one class: a square grid, not a row of 16


def test_an_unknown_class_is_a_one_line_error_listing_the_known_ones(conditional_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(conditional_run), "--class", "eleven", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and not (tmp_path / "x.png").exists()
    assert "unknown class 'eleven'; the known classes are 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_backend_without_fake_labels_cannot_run_a_conditional_recipe(write_recipe):
    from gankit.updates import check_supported

    recipe = load_recipe(write_recipe(architecture=CONDITIONAL_DCGAN), [], load_registry())
    architecture = recipe.architecture.component.factory(recipe.architecture.params, DataSpec(28, 28, 1, 10))
    with pytest.raises(ValueError, match=r"a conditional architecture: the backend lacks the primitive\(s\) fake_labels"):
        check_supported(recipe.train, architecture, object())
