"""Learning-rate schedules, written once in gankit.schedules: the factor each schedule gives,
both backends setting the planned rate inside their step, the run's length handed to the
trainer when a recipe gives epochs, a bit-exact resume, the rates in metrics.jsonl and
checkpoints, and bad settings refused in one line before anything runs."""

from __future__ import annotations

import json
from importlib.util import find_spec

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from conftest import Trained, recipe_dict

from gankit.cli import main
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.rundir import RunDir, read_meta
from gankit.schedules import lr_factor

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
            for name in ("torch", "tensorflow")]
SCHEDULED = {"lr_schedule": "cosine", "lr_warmup": 2, "lr_g": 1e-3, "lr_d": 4e-4}


def by_hand(schedule: str, total: int, warmup: int) -> np.ndarray:
    """Each step's factor in numpy: step / warmup, then the schedule over the steps left."""
    steps = np.arange(total)
    t, length = steps - warmup, total - warmup
    after = {"constant": np.ones(total), "linear_decay": 1 - t / length,
             "cosine": 0.5 * (1 + np.cos(np.pi * t / length))}[schedule]
    return np.where(steps < warmup, steps / max(warmup, 1), after)


@pytest.mark.parametrize("schedule", ["constant", "linear_decay", "cosine"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_each_schedule_gives_the_hand_computed_factor(schedule, warmup):
    factors = [lr_factor(schedule, step, 10, warmup) for step in range(10)]
    np.testing.assert_allclose(factors, by_hand(schedule, 10, warmup), rtol=0, atol=1e-15)


def test_the_factor_at_a_few_steps():
    assert [lr_factor("linear_decay", step, 4) for step in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [lr_factor("constant", step, 9, 4) for step in (0, 1, 4, 8)] == [0.0, 0.25, 1.0, 1.0]
    assert lr_factor("cosine", 2, 6, 2) == 1.0 and lr_factor("cosine", 4, 6, 2) == pytest.approx(0.5)
    assert lr_factor("cosine", 6, 6, 2) == 0.0 and lr_factor("linear_decay", 7, 6) == 0.0  # past the end


def _rates(trainer, backend: str) -> tuple[float, float]:
    """The learning rates the trainer's optimizers hold, read back from them."""
    if backend == "torch":
        return tuple(trainer.optimizers[name].param_groups[0]["lr"] for name in ("generator", "discriminator"))
    return tuple(float(trainer.optimizers[name].learning_rate.numpy()) for name in ("generator", "discriminator"))


def _weights(trainer, backend: str) -> list[np.ndarray]:
    if backend == "torch":
        return [p.detach().numpy().copy() for p in trainer.generator.parameters()]
    return [v.numpy() for v in trainer.generator.trainable_variables]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_step_trains_with_the_scheduled_rate(backend, write_recipe):
    """The rate is set inside each step (TensorFlow's compiled step does not freeze the first
    one): read back after every step it is the plan's, and the warm-up's first step, at rate
    0, moves no weight."""
    trained = Trained(write_recipe(backend={"use": backend, "device": "cpu"}, train=SCHEDULED))
    before = _weights(trained.trainer, backend)
    for step in range(6):
        trained.steps(step, step + 1)
        factor = lr_factor("cosine", step, 6, 2)
        expected = (1e-3 * factor, 4e-4 * factor)
        if backend == "torch":
            assert _rates(trained.trainer, backend) == expected
        else:
            assert _rates(trained.trainer, backend) == tuple(float(np.float32(rate)) for rate in expected)
        if step == 0:
            for weight, start in zip(_weights(trained.trainer, backend), before):
                np.testing.assert_array_equal(weight, start)
    assert not np.array_equal(_weights(trained.trainer, backend)[0], before[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scheduled_run_resumes_bit_exact(backend, write_recipe, tmp_path):
    recipe = write_recipe(backend={"use": backend, "device": "cpu"}, train={**SCHEDULED, "lr_schedule": "linear_decay"})
    straight = Trained(recipe)
    losses = straight.steps(0, 6)
    resumed_losses, resumed = Trained.interrupted(recipe, 3, 6, tmp_path)
    assert resumed_losses == losses
    assert _rates(resumed.trainer, backend) == _rates(straight.trainer, backend)
    np.testing.assert_array_equal(resumed.trainer.generate(8, 3), straight.trainer.generate(8, 3))
    constant = Trained(write_recipe("constant.toml", backend={"use": backend, "device": "cpu"},
                                    train={"lr_g": 1e-3, "lr_d": 4e-4})).steps(0, 6)
    assert constant[-1] != losses[-1]


def _run(recipe_path, runs, *args) -> tuple[RunDir, list[dict]]:
    result = CliRunner().invoke(main, ["run", *map(str, args), "--runs-dir", str(runs)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = RunDir(next(runs.iterdir()))
    return run_dir, [json.loads(line) for line in run_dir.metrics.read_text().splitlines()]


def test_epochs_set_the_schedules_length_and_the_rates_are_logged(tiny_mnist, tmp_path):
    """256 images in batches of 32: one epoch is 8 steps, over which linear_decay runs."""
    table = recipe_dict(tiny_mnist, train={"epochs": 1, "log_every": 1, "lr_schedule": "linear_decay", "lr_g": 1e-3})
    del table["train"]["steps"]
    recipe = tmp_path / "epochs.toml"
    recipe.write_text(tomli_w.dumps(table))
    run_dir, rows = _run(recipe, tmp_path / "runs", recipe)
    assert [row["step"] for row in rows] == list(range(1, 9))
    assert [row["lr_g"] for row in rows] == [1e-3 * (1 - step / 8) for step in range(8)]
    assert [row["lr_d"] for row in rows] == [2e-4 * (1 - step / 8) for step in range(8)]
    meta = read_meta(run_dir.checkpoint(8))
    assert (meta["lr_g"], meta["lr_d"]) == (rows[-1]["lr_g"], rows[-1]["lr_d"])


def test_a_constant_run_logs_no_rates(write_recipe, tmp_path):
    _, rows = _run(write_recipe(), tmp_path / "runs", write_recipe())
    assert rows and not any("lr_g" in row or "lr_d" in row for row in rows)


def test_lengthening_a_run_on_resume_stretches_its_schedule(write_recipe, tmp_path):
    recipe = write_recipe(train={"steps": 4, "log_every": 1, "lr_schedule": "linear_decay"})
    runs = tmp_path / "runs"
    run_dir, _ = _run(recipe, runs, recipe)
    result = CliRunner().invoke(main, ["run", "--resume", str(run_dir.path), "--set", "train.steps=8"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in run_dir.metrics.read_text().splitlines()]
    assert [row["lr_g"] for row in rows[4:]] == [2e-4 * (1 - step / 8) for step in range(4, 8)]


@pytest.mark.parametrize("train, expected", [
    ({"lr_schedule": "step"}, "unknown learning-rate schedule 'step'; known: constant, linear_decay, cosine"),
    ({"lr_warmup": -1}, "train.lr_warmup: Input should be greater than or equal to 0"),
    ({"lr_warmup": 6}, "train.lr_warmup = 6 steps is not shorter than the run (6 steps); lower train.lr_warmup"),
    ({"lr_warmup": 8, "epochs": 1, "steps": None},
     "train.lr_warmup = 8 steps is not shorter than the run (8 steps); lower train.lr_warmup"),
])
def test_bad_schedule_settings_are_one_line_errors(tiny_mnist, tmp_path, train, expected):
    table = recipe_dict(tiny_mnist, train=train)
    table["train"] = {key: value for key, value in table["train"].items() if value is not None}
    recipe = tmp_path / "bad.toml"
    recipe.write_text(tomli_w.dumps(table))
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_backend_without_set_learning_rate_is_refused_in_one_line(write_recipe):
    from gankit.updates import check_supported

    for train, key in (({"lr_schedule": "cosine"}, "lr_schedule"), ({"lr_warmup": 2}, "lr_warmup")):
        recipe = load_recipe(write_recipe(train=train), [], load_registry())
        with pytest.raises(ValueError, match=rf"^train.{key}: the backend lacks the primitive\(s\) set_learning_rate"):
            check_supported(recipe.train, None, object())
    check_supported(load_recipe(write_recipe(), [], load_registry()).train, None, object())


def test_the_curves_draw_both_rates_in_one_panel():
    from gankit.curves import _panels

    series = {"d_loss": {1: 1.0}, "g_loss": {1: 1.0}, "lr_g": {1: 1e-3}, "lr_d": {1: 4e-4}}
    assert ("learning rates", {"lr_g": "G", "lr_d": "D"}) in _panels(series)
    assert [title for title, _ in _panels(series)] == ["losses", "learning rates"]
