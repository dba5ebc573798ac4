"""Searches: a recipe's [search] is an Optuna study whose trials are ordinary runs; it
finishes with its number of trials, prunes hopeless ones, survives SIGKILL without losing
or repeating a trial, runs on Ray, and refuses bad input in one line before any trial."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from conftest import gankit, recipe_dict, wait_for
from gankit.cli import main
from gankit.recipe import read_toml

optuna = pytest.importorskip("optuna")


pytestmark = pytest.mark.usefixtures("scorer_installed")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_search(folder: Path, mnist: Path, search: dict, steps: int = 6, **sections) -> Path:
    sections = {"eval": {"every": 2, "metrics": ["eval_seed"], "features": "pixels", "n": 16}, **sections}
    recipe = recipe_dict(mnist, name="tiny", backend={"use": "torch", "device": "cpu", "threads": 1},
                         train={"steps": steps, "log_every": 2, "checkpoint_every": 2},
                         export=[{"use": "png", "every": 1000}], **sections)
    recipe["search"] = search
    path = folder / "search.toml"
    path.write_text(tomli_w.dumps(recipe))
    return path


def study_of(search_dir: Path):
    return optuna.load_study(study_name=search_dir.name, storage=f"sqlite:///{search_dir / 'study.db'}")


def only_search(root: Path) -> Path:
    (found,) = root.iterdir()
    return found


def test_a_search_runs_its_trials_and_writes_the_best_as_a_recipe(tmp_path, tiny_mnist):
    recipe = write_search(tmp_path, tiny_mnist, {"trials": 3, "sampler": "random", "pruner": "none",
                                                 "eval.seed": {"int": [0, 50]}, "train.lr_g": {"log_uniform": [1e-4, 1e-3]}})
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 0, result.output
    search_dir = only_search(tmp_path / "searches")
    trials = study_of(search_dir).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert [t.value for t in trials] == [float(t.params["eval.seed"]) for t in trials], "each trial scored by its run"
    runs = sorted((search_dir / "trials").iterdir())
    assert len(runs) == 3 and all(json.loads((r / "summary.json").read_text())["status"] == "completed" for r in runs)
    best = min(trials, key=lambda t: t.value)
    recorded = json.loads((search_dir / "search.json").read_text())
    assert recorded["best"]["trial"] == best.number and recorded["trials"] == {"complete": 3}
    assert f"trial {best.number}" in result.output

    written = tmp_path / "best.toml"
    result = cli("search", "best", search_dir, "-o", written)
    assert result.exit_code == 0, result.output
    data = read_toml(written)
    assert "search" not in data and data["eval"]["seed"] == best.params["eval.seed"]
    assert data["train"]["lr_g"] == pytest.approx(best.params["train.lr_g"])


def test_the_pruner_stops_a_trial_whose_scores_are_hopeless(tmp_path, tiny_mnist):
    """eval.seed is the score: after a trial scoring 0 completes, one scoring 1000 is
    worse than the median at its first report, and is stopped there, marked pruned."""
    recipe = write_search(tmp_path, tiny_mnist, {"trials": 6, "sampler": "random", "seed": 6, "pruner": "median",
                                                 "startup_trials": 1, "eval.seed": {"choice": [0, 1000]}}, steps=8)
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 0, result.output
    search_dir = only_search(tmp_path / "searches")
    trials = study_of(search_dir).get_trials()
    first_good = min(t.number for t in trials if t.params["eval.seed"] == 0)
    hopeless = [t for t in trials if t.params["eval.seed"] == 1000 and t.number > first_good]
    assert hopeless, "the sampler's seed should draw a hopeless trial after a good one"
    assert all(t.state.name == "PRUNED" for t in hopeless)
    assert all(t.state.name == "COMPLETE" for t in trials if t.params["eval.seed"] == 0)
    run_dir = search_dir / "trials" / hopeless[0].user_attrs["run_dir"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["steps"] < 8 and "median pruner" in summary["message"]
    resumed = cli("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed", "a pruned run resumes like any"


def test_a_search_killed_mid_trial_resumes_without_losing_or_repeating_a_trial(tmp_path, tiny_mnist):
    recipe = write_search(tmp_path, tiny_mnist, {"trials": 3, "sampler": "random", "pruner": "none",
                                                 "eval.seed": {"int": [0, 50]}}, steps=300)
    searches = tmp_path / "searches"
    process = gankit("run", recipe, "--searches-dir", searches, start_new_session=True)

    def second_trial_has_a_checkpoint() -> bool:
        runs = sorted((searches.glob("*/trials/*")))
        return len(runs) >= 2 and any((runs[1] / "checkpoints").glob("step_*"))

    wait_for(second_trial_has_a_checkpoint, process)
    os.killpg(process.pid, signal.SIGKILL)  # the search and its worker, at once
    process.wait()
    search_dir = only_search(searches)
    before = {t.number: (t.state.name, t.value) for t in study_of(search_dir).get_trials()}
    assert before[0][0] == "COMPLETE" and before[1][0] == "RUNNING"

    result = cli("run", "--resume", search_dir)
    assert result.exit_code == 0, result.output
    trials = study_of(search_dir).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3, "exactly the requested trials, each once"
    assert trials[0].value == before[0][1], "a finished trial is not run again"
    runs = sorted((search_dir / "trials").iterdir())
    assert [r.name for r in runs] == sorted(t.user_attrs["run_dir"] for t in trials)
    lines = [json.loads(line) for line in (runs[1] / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "d_loss" in line]
    assert steps == sorted(set(steps)) and steps[-1] == 300, "the killed trial continued from its checkpoint"
    assert "continues" in result.output


def test_a_search_on_a_local_ray_cluster(tmp_path, tiny_mnist, ray_cluster):
    recipe = write_search(tmp_path, tiny_mnist, {"trials": 3, "sampler": "tpe", "startup_trials": 2,
                                                 "eval.seed": {"int": [0, 50]}})
    result = cli("run", recipe, "--ray", ray_cluster, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 0, result.output
    trials = study_of(only_search(tmp_path / "searches")).get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)


def test_confirmation_reruns_the_best_over_seeds_beside_the_recipe_as_written(tmp_path, tiny_mnist):
    recipe = write_search(tmp_path, tiny_mnist, {"trials": 2, "sampler": "random", "pruner": "none",
                                                 "confirm": {"top": 1, "seeds": [0, 1]},
                                                 "eval.seed": {"int": [1, 50]}})
    result = cli("run", recipe, "--jobs", 2, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 0, result.output
    search_dir = only_search(tmp_path / "searches")
    names = sorted(p.name.split("-", 1)[1] for p in (search_dir / "confirm").iterdir())
    best = min(study_of(search_dir).get_trials(), key=lambda t: t.value)
    assert names == sorted([f"tiny-baseline-seed{s}" for s in (0, 1)] + [f"tiny-t{best.number:04d}-seed{s}" for s in (0, 1)])
    confirmed = json.loads((search_dir / "search.json").read_text())["confirmed"]
    ranked = confirmed["configurations"]
    assert [c["n"] for c in ranked] == [2, 2] and ranked[0]["mean"] == 0.0, "the recipe as written scores eval.seed 0"
    assert ranked[0]["significantly_worse"] is None and ranked[1]["significantly_worse"] is True
    assert "confirmed over seeds" in result.output


BAD = [
    ({"trials": 2, "train.lr_d": {"log_normal": [1e-5, 1e-3]}}, "unknown distribution 'log_normal'; did you mean"),
    ({"trials": 2, "train.loss": {"choice": []}}, "train.loss.choice: expected a non-empty list"),
    ({"trials": 2, "train.lr_d": {"uniform": [1e-3, 1e-5]}}, "runs the wrong way"),
    ({"trials": 2, "train.lr_d": {"log_uniform": [0, 1e-3]}}, "a log scale needs low above 0"),
    ({"trials": 2, "train.loss": {"choice": ["bce", "hinj"]}}, "search.train.loss = 'hinj'"),
    ({"trials": 2, "train.lr_dd": {"uniform": [0.1, 0.2]}}, "train.lr_dd"),
    ({"trials": 0, "train.lr_d": {"uniform": [0.1, 0.2]}}, "search.trials"),
    ({"trials": 2, "samplr": "tpe", "train.lr_d": {"uniform": [0.1, 0.2]}}, "did you mean 'sampler'"),
    ({"trials": 2}, "names no parameter to search"),
    ({"trials": 2, "budget": {"minutes": 2}, "train.lr_d": {"uniform": [0.1, 0.2]}}, "search.budget"),
]


@pytest.mark.parametrize("search, expected", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_search_input_is_one_line_before_any_trial(tmp_path, tiny_mnist, search, expected):
    recipe = write_search(tmp_path, tiny_mnist, search)
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "searches").exists()


def test_a_search_refuses_a_swept_key_a_missing_eval_and_a_bad_storage(tmp_path, tiny_mnist):
    search = {"trials": 2, "train.lr_d": {"uniform": [1e-4, 2e-4]}}
    recipe = write_search(tmp_path, tiny_mnist, search, sweep={"train.lr_d": [1e-4, 2e-4]})
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 2 and "train.lr_d: set by both [sweep] and [search]" in result.output, result.output

    data = recipe_dict(tiny_mnist, search=search)
    recipe.write_text(tomli_w.dumps(data))
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 2 and "add an [eval] table" in result.output, result.output

    recipe = write_search(tmp_path, tiny_mnist, search)
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches", "--storage", "postgresql://nobody@127.0.0.1:9/x")
    assert result.exit_code == 2 and "--storage postgresql://nobody@127.0.0.1:9/x: cannot open it" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not any((tmp_path / "searches").iterdir()), "nothing is left of a search that could not start"


def test_a_metric_whose_module_is_missing_stops_the_search_before_any_trial(tmp_path, tiny_mnist):
    recipe = write_search(tmp_path, tiny_mnist, {"trials": 2, "train.lr_d": {"uniform": [1e-4, 2e-4]}},
                          eval={"metrics": ["eval_seed_elsewhere"], "features": "pixels", "n": 16})
    result = cli("run", recipe, "--searches-dir", tmp_path / "searches")
    assert result.exit_code == 2 and "needs the module 'gankit_no_such_module'" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "searches").exists()
