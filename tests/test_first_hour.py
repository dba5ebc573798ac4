"""The first hour (issue 25): what a new user types wrong gets one line that says what was
wrong and what to type instead; a time budget in minutes; a batch that says why it skips a
recipe; a dry run that says what decides the run's length."""

from __future__ import annotations

import json

import pytest

from conftest import checkpoint, cli, one_line
from test_recipe import assert_clean_error


def test_minutes_is_a_time_budget_that_a_resume_takes_too(write_recipe, tmp_path):
    assert "--minutes" in cli("run", "--help").output
    recipe = write_recipe(train={"steps": 100_000, "log_every": 1, "checkpoint_every": 0})
    result = cli("run", recipe, "--runs-dir", tmp_path / "runs", "--minutes", "2e-8")  # 1.2e-6 CPU seconds
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "00000-tiny"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps"]) == ("completed", 1), "the budget is spent by the first step"
    assert "train.max_seconds = 1.2e-06 cpu seconds ran out" in summary["message"]
    assert checkpoint(run_dir, 1).is_dir()

    spent = summary["train_seconds"]["spent"]
    resumed = cli("run", "--resume", run_dir, "--minutes", repr(3 * spent / 60))  # the whole run's budget
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and 1 < summary["steps"] < 100_000
    assert summary["train_seconds"]["spent"] >= 3 * spent * (1 - 1e-9)


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_minutes_must_be_above_zero(write_recipe, tmp_path, minutes):
    result = cli("run", write_recipe(), "--runs-dir", tmp_path / "runs", "--minutes", minutes)
    assert_clean_error(result, "--minutes", "above 0", runs_dir=tmp_path / "runs")


def test_a_dry_run_says_what_decides_the_length(write_recipe):
    recipe = write_recipe(train={"epochs": 5})
    result = cli("run", recipe, "--dry-run", "--set", "train.steps=30")
    assert result.exit_code == 0, result.output
    assert "length: 30 steps (train.steps; train.epochs = 5 is ignored)" in result.output
    recipe.write_text(recipe.read_text().replace("steps = 6\n", ""))
    result = cli("run", recipe, "--dry-run", "--minutes", "2")
    assert "length: 5 epochs (train.epochs), or less: it ends once its steps have taken 120 cpu seconds" in \
        one_line(result.output), result.output


def test_a_keep_going_batch_says_why_each_invalid_recipe_is_left_out(write_recipe, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nsteps = 1\n")
    unknown = write_recipe("unknown.toml", trian={"steps": 1})
    result = cli("run", write_recipe(), broken, unknown, "--keep-going", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("error:") and f"{broken}: not valid TOML" in line for line in lines), result.output
    assert any(line.startswith("error:") and "did you mean 'train'" in line for line in lines), result.output
    assert (tmp_path / "runs" / "00000-tiny" / "summary.json").is_file(), "the valid one ran"


def test_a_misspelt_recipe_file_gets_the_closest_names(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("dcgan_mnist.toml", "dcgan_cifar10.toml", "mlp_mnist.toml"):
        (recipes / name).write_text("")
    result = cli("run", recipes / "dcgan_mnsit.toml")
    assert_clean_error(result, "no such recipe file", f"did you mean {recipes / 'dcgan_mnist.toml'}?")
    assert "mlp_mnist" not in result.output
    assert "check the path" in cli("run", recipes / "zzz.toml").output


def test_resume_of_a_path_that_is_not_there_lists_the_runs(run_dir):
    runs = run_dir.parent
    (runs / "00001-other").mkdir()
    (runs / "00001-other" / "recipe.toml").write_text("")
    result = cli("run", "--resume", runs / "nope")
    assert_clean_error(result, f"{runs / 'nope'} does not exist",
                       f"the runs in {runs}, newest first, are {runs / '00001-other'}, {run_dir}")
    assert "not a gankit run directory" not in result.output


def test_resume_of_a_recipe_file_says_how_to_start_it(tmp_path, write_recipe):
    recipe = write_recipe()
    result = cli("run", "--resume", recipe)
    assert_clean_error(result, f"{recipe} is a recipe file; --resume takes a run directory: to start it, "
                               f"gankit run {recipe}")


def test_sample_of_a_folder_that_is_not_a_run_says_so(run_dir, tmp_path):
    folder = run_dir.parent / "emptyrun"
    folder.mkdir()
    (folder / "notes.txt").write_text("")
    result = cli("sample", folder, "-o", tmp_path / "grid.png")
    assert_clean_error(result, f"{folder} is a folder but not a gankit run (it has no recipe.toml); "
                               f"pass a run directory: the runs in {run_dir.parent}, newest first, are {run_dir}")
    assert "no such recipe file" not in result.output


def test_sample_best_of_a_run_without_eval_says_best_needs_eval(run_dir, tmp_path):
    result = cli("sample", run_dir, "-o", tmp_path / "grid.png", "--checkpoint", "best")
    assert_clean_error(result, "--checkpoint best", "has no [eval] table", "step_00000006")


@pytest.mark.parametrize("args, hint", [
    (["--backend", "tensorflow"], "--set backend.use=tensorflow"),
    (["--steps=30"], "--set train.steps=30"),
    (["--batch-size", "8"], "--set train.batch_size=8"),
    (["--seed", "3"], "--set seed=3"),
])
def test_an_option_that_names_a_recipe_key_says_which_set_to_use(write_recipe, args, hint):
    result = cli("run", write_recipe(), *args)
    assert result.exit_code == 2
    assert f"No such option: {args[0].split('=')[0]}; recipe keys are set with --set, here: {hint}" in result.output


def test_an_unknown_option_that_is_no_recipe_key_is_clicks_own_error(write_recipe):
    result = cli("run", write_recipe(), "--bogus")
    assert result.exit_code == 2 and "No such option '--bogus'" in result.output and "--set" not in result.output


def test_off_a_terminal_paths_and_commands_are_not_wrapped(run_dir, tmp_path):
    deep = tmp_path / ("a-folder-with-a-long-name-" * 3) / "plugins"
    deep.mkdir(parents=True)
    result = cli("new-plugin", "wide-mlp", "--kind", "architecture", "-o", deep)
    assert result.exit_code == 0, result.output
    folder = deep / "gankit-wide-mlp"
    assert f"pip install -e '{folder}[test]' && python -m pytest {folder}\n" in result.output, result.output
    grid = deep / "grid.png"
    result = cli("sample", run_dir, "-n", "4", "-o", grid)
    assert result.exit_code == 0, result.output
    assert f" to {grid}\n" in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_after_a_resume_the_summary_counts_every_session(run_dir):
    from gankit.rundir import read_meta

    first = json.loads((run_dir / "summary.json").read_text())
    before = read_meta(checkpoint(run_dir, 6))["run_seconds"]
    assert 0 < before <= first["seconds"] and first["session_seconds"] == first["seconds"]
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output
    second = json.loads((run_dir / "summary.json").read_text())
    assert second["seconds"] == pytest.approx(before + second["session_seconds"], abs=0.01)
    assert second["seconds"] > second["session_seconds"], "the first session counts too"
    assert read_meta(checkpoint(run_dir, 8))["run_seconds"] > before


def test_a_missing_exporter_module_makes_the_recipe_invalid_before_anything_runs(write_recipe, tmp_path, monkeypatch):
    import gankit.registry

    installed = gankit.registry._installed
    monkeypatch.setattr(gankit.registry, "_installed", lambda module: module != "tensorboardX" and installed(module))
    recipe = write_recipe("board.toml", export=[{"use": "png", "every": 3}, {"use": "tensorboard"}])
    runs = tmp_path / "runs"
    result = cli("run", recipe, "--runs-dir", runs)
    assert_clean_error(result, f"{recipe}: exporter 'tensorboard'", "'tensorboardX'", "pip install 'gankit[tensorboard]'",
                       runs_dir=runs)
    batch = cli("run", recipe, write_recipe(), "--keep-going", "--runs-dir", runs)
    assert batch.exit_code == 1, batch.output
    assert "invalid" in batch.output and "failed" not in batch.output, batch.output
    assert [p.name for p in runs.iterdir()] == ["00000-tiny"], "the invalid recipe made no run directory"
