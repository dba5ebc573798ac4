"""A few real training steps on the torch backend: the run directory, determinism,
checkpoints that restore, and `gankit sample`."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tomli_w
import torch
from click.testing import CliRunner
from conftest import recipe_dict
from safetensors.torch import load_file

from gankit.cli import main
from gankit.recipe import read_toml

DCGAN_SMALL = {"use": "dcgan", "g_start_channels": 16,
               "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}


def train(recipe, runs, *args):
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in runs.iterdir() if p.name.endswith(read_toml(recipe)["name"])][-1:]
    return run_dir


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("architecture", [{"use": "mlp", "g_hidden": [32], "d_hidden": [32]}, DCGAN_SMALL])
def test_a_run_leaves_everything_behind(write_recipe, tmp_path, architecture):
    run_dir = train(write_recipe(architecture=architecture), tmp_path / "runs")
    assert run_dir.name == "00000-tiny"
    resolved = read_toml(run_dir / "recipe.toml")
    assert resolved["gankit"]["version"] and resolved["gankit"]["plugins"]["backend.torch"] == "builtin"
    assert resolved["train"]["steps"] == 6 and resolved["architecture"]["use"] == architecture["use"]
    assert [m["step"] for m in metrics(run_dir)] == [2, 4, 6]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_sec"} <= set(metrics(run_dir)[0])
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    grid = iio.imread(run_dir / "samples" / "step_00000006.png")
    assert grid.shape == (8 * 30 + 2, 8 * 30 + 2)  # 64 samples, 28x28 with 2-pixel borders
    assert grid.std() > 0
    assert len(iio.imread(run_dir / "progress.gif", index=None)) == 2
    assert iio.immeta(run_dir / "progress.gif", index=1)["duration"] == 1000  # the last grid holds
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000004", "step_00000006"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert summary["data"]["images"] == 256


def test_same_recipe_and_seed_give_the_same_losses(write_recipe, tmp_path):
    recipe = write_recipe(architecture=DCGAN_SMALL)
    first, second = train(recipe, tmp_path / "a"), train(recipe, tmp_path / "b")
    strip = lambda rows: [{k: v for k, v in row.items() if k != "images_per_sec"} for row in rows]  # noqa: E731
    assert strip(metrics(first)) == strip(metrics(second))
    other = train(write_recipe("other.toml", seed=1, architecture=DCGAN_SMALL), tmp_path / "c")
    assert strip(metrics(other)) != strip(metrics(first))


def losses(run_dir, key):
    return np.array([row[key] for row in metrics(run_dir)])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_mnist):
    """Four steps with no option set, logged at each step; shared by the option tests."""
    folder = tmp_path_factory.mktemp("baseline")
    recipe = folder / "tiny.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, train={"steps": 4, "log_every": 1})))
    return train(recipe, folder / "runs")


# Each option against the same run without it (log_every 1): what it must change, and what
# it must leave alone. D's loss at step 1 is computed before any update.
@pytest.mark.parametrize("train_options, check", [
    ({"loss": "minimax"},  # same D loss; G minimises log(1 - D(G(z))) <= 0 where bce's G loss is > 0
     lambda base, run: losses(run, "d_loss")[0] == losses(base, "d_loss")[0]
     and (losses(run, "g_loss") < 0).all() and (losses(base, "g_loss") > 0).all()),
    ({"update": "simultaneous"},  # same D step 1; G's step-1 loss through the D before its update
     lambda base, run: losses(run, "d_loss")[0] == losses(base, "d_loss")[0]
     and losses(run, "g_loss")[0] != losses(base, "g_loss")[0]),
    ({"d_steps": 2},  # D's second update of step 1 sees another batch
     lambda base, run: losses(run, "d_loss")[0] != losses(base, "d_loss")[0]),
    ({"label_smoothing": 0.1},  # real targets 0.9: D's step-1 loss changes, D's outputs do not
     lambda base, run: losses(run, "d_loss")[0] != losses(base, "d_loss")[0]
     and losses(run, "d_real")[0] == losses(base, "d_real")[0]),
    ({"label_noise": 0.05},
     lambda base, run: losses(run, "d_loss")[0] != losses(base, "d_loss")[0]
     and losses(run, "d_real")[0] == losses(base, "d_real")[0]),
    ({"optimizer": "rmsprop"},  # the same first losses, other updates after them
     lambda base, run: losses(run, "d_loss")[0] == losses(base, "d_loss")[0]
     and (losses(run, "d_loss")[1:] != losses(base, "d_loss")[1:]).all()),
    ({"clip_value": 1e-6},  # every gradient element clipped: Adam then steps by the signs alone
     lambda base, run: losses(run, "d_loss")[0] == losses(base, "d_loss")[0]
     and (losses(run, "d_loss")[1:] != losses(base, "d_loss")[1:]).all()),
])
def test_each_training_option_changes_what_it_should(write_recipe, tmp_path, baseline, train_options, check):
    base = baseline
    run = train(write_recipe("option.toml", train={"steps": 4, "log_every": 1, **train_options}), tmp_path / "runs")
    assert metrics(run)[-1]["step"] == 4
    assert check(base, run), (metrics(base), metrics(run))


def test_checkpoint_is_safetensors_plus_weights_only_state(write_recipe, tmp_path):
    run_dir = train(write_recipe(), tmp_path / "runs")
    checkpoint = run_dir / "checkpoints" / "step_00000006"
    weights = load_file(str(checkpoint / "generator.safetensors"))
    assert any(name.endswith("weight") for name in weights)
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert state["opt_g"]["state"] and state["fixed_noise"].shape == (64, 100)
    assert json.loads((checkpoint / "meta.json").read_text())["step"] == 6


def test_sample_draws_from_the_last_checkpoint(write_recipe, tmp_path):
    run_dir = train(write_recipe(architecture=DCGAN_SMALL), tmp_path / "runs")
    runner = CliRunner()
    for name in ("a.npz", "b.npz"):
        result = runner.invoke(main, ["sample", str(run_dir), "-n", "10", "-o", str(tmp_path / name), "--seed", "3"])
        assert result.exit_code == 0, result.output
    a, b = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"]
    assert a.shape == (10, 28, 28, 1) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    result = runner.invoke(main, ["sample", str(run_dir), "-n", "16", "-o", str(tmp_path / "grid.png")])
    assert result.exit_code == 0 and iio.imread(tmp_path / "grid.png").shape == (4 * 30 + 2, 4 * 30 + 2)
    result = runner.invoke(main, ["sample", str(run_dir), "-n", "10", "-o", str(tmp_path / "c.npz"), "--seed", "3",
                                  "--checkpoint", "step_00000004"])
    assert result.exit_code == 0 and "step_00000004" in result.output, result.output
    assert not np.array_equal(np.load(tmp_path / "c.npz")["images"], a), "an earlier generator draws other images"
    result = runner.invoke(main, ["sample", str(run_dir), "-o", str(tmp_path / "d.png"), "--checkpoint", "best"])
    assert result.exit_code == 2 and "[eval]" in result.output and "step_00000004, step_00000006" in result.output


def test_checkpoint_restores_the_generator_exactly(write_recipe, tmp_path):
    """The last sample grid was drawn by the live generator; the restored one draws the same."""
    from gankit.plugins import load_registry
    from gankit.recipe import load_recipe
    from gankit.rundir import RunDir
    from gankit.runner import build_trainer

    run_dir = train(write_recipe(architecture=DCGAN_SMALL), tmp_path / "runs")
    recipe = load_recipe(run_dir / "recipe.toml", [], load_registry())
    trainer = build_trainer(recipe, RunDir(run_dir).spec())
    trainer.load(run_dir / "checkpoints" / "step_00000006")
    from gankit.images import grid

    np.testing.assert_array_equal(grid(trainer.fixed_samples())[..., 0], iio.imread(run_dir / "samples" / "step_00000006.png"))


def test_sample_errors_are_one_line(tmp_path, write_recipe):
    runner = CliRunner()
    result = runner.invoke(main, ["sample", str(tmp_path), "-o", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2 and "use a .png" in result.output
    result = runner.invoke(main, ["sample", str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "pass a run directory" in result.output
