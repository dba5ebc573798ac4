"""train.max_seconds: a time budget that ends a run, completed, where it runs out (its last
step scored, sampled and checkpointed like any last step), counted across a resume."""

from __future__ import annotations

import json

import pytest
import tomli_w

from conftest import checkpoint, cli, one_line, recipe_dict
from gankit.rundir import read_meta


pytestmark = pytest.mark.usefixtures("scorer_installed")


def budget_recipe(tmp_path, tiny_mnist, **train):
    recipe = recipe_dict(tiny_mnist, train={"steps": 6, "log_every": 2, "checkpoint_every": 2, **train},
                         eval={"every": 2, "metrics": ["eval_seed"], "features": "pixels", "n": 16})
    path = tmp_path / "budget.toml"
    path.write_text(tomli_w.dumps(recipe))
    return path


def only_run(runs):
    (found,) = runs.iterdir()
    return found


def test_a_run_whose_budget_runs_out_ends_completed_at_that_step(tmp_path, tiny_mnist):
    recipe = budget_recipe(tmp_path, tiny_mnist, max_seconds=1e-6, clock="wall")
    result = cli("run", recipe, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "runs")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 1 and summary["total_steps"] == 6
    assert "budget of train.max_seconds = 1e-06 wall seconds ran out" in summary["message"]
    assert summary["train_seconds"]["clock"] == "wall" and summary["train_seconds"]["spent"] > 0
    during = json.loads((run_dir / "eval.json").read_text())["during_training"]
    assert during["last"]["step"] == 1, "the step where the budget ran out is scored as the run's last"
    assert read_meta(checkpoint(run_dir, 1))["train_seconds"] == pytest.approx(summary["train_seconds"]["spent"], abs=1e-3)
    assert any((run_dir / "samples").glob("*00001*")), "and sampled"

    resumed = cli("run", "--resume", run_dir)
    assert resumed.exit_code != 0 and "already trained for its budget of train.max_seconds" in one_line(resumed.output)


def test_a_resumed_run_counts_the_seconds_its_checkpoint_had_spent(tmp_path, tiny_mnist):
    recipe = budget_recipe(tmp_path, tiny_mnist, steps=4, max_seconds=1e6, clock="wall")
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    run_dir = only_run(tmp_path / "runs")
    spent = read_meta(checkpoint(run_dir, 4))["train_seconds"]
    assert read_meta(checkpoint(run_dir, 2))["train_seconds"] < spent

    result = cli("run", "--resume", run_dir, "--set", "train.steps=40", "--set", f"train.max_seconds={spent + 1e-9}")
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 5, "the budget was nearly spent before the resume: one more step spends it"
    assert summary["train_seconds"]["spent"] > spent


def test_the_cpu_clock_is_the_default_and_a_clock_needs_a_budget(tmp_path, tiny_mnist):
    recipe = budget_recipe(tmp_path, tiny_mnist, max_seconds=1e6)
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    summary = json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["train_seconds"]["clock"] == "cpu"

    recipe = budget_recipe(tmp_path, tiny_mnist, clock="wall")
    result = cli("run", recipe, "--dry-run")
    assert result.exit_code == 2 and "set max_seconds too" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_distributed_run_refuses_a_time_budget(tmp_path, tiny_mnist):
    from gankit.recipe import build_recipe, read_toml
    from gankit.plugins import load_registry
    from gankit.runner import RunError, run

    path = budget_recipe(tmp_path, tiny_mnist, max_seconds=10)
    recipe = build_recipe(read_toml(path), path, load_registry())
    with pytest.raises(RunError, match="a time budget is for runs of one process"):
        run(recipe, runs_root=tmp_path / "runs", context=None, world=object())
