"""A plugin's parameters of every kind survive the round trip through a run's recipe.toml,
and whatever its factories raise is one line naming the plugin and the recipe."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gankit.cli import main
from gankit.recipe import read_toml

FIELDS = {"use": "fields-mlp", "hidden": [16, 16], "activation": "leaky",
          "head": {"slope": 0.1, "bias": False}, "notes": "notes/run.txt"}


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def fields_run(install, write_recipe, tmp_path):
    install("fields-gankit")
    code, output = cli("run", write_recipe(architecture=FIELDS, train={"steps": 4, "checkpoint_every": 2}),
                       "--runs-dir", tmp_path / "runs")
    assert code == 0, output
    return tmp_path / "runs" / "00000-tiny"


def test_tuples_paths_enums_and_nested_models_are_written_and_read_back(fields_run, tmp_path):
    written = read_toml(fields_run / "recipe.toml")["architecture"]
    assert written == {**FIELDS, "head": {"slope": 0.1, "bias": False}, "refresh": 500, "window": "2 epochs"}

    code, output = cli("sample", fields_run, "-n", 4, "-o", tmp_path / "grid.png")
    assert code == 0, output
    code, output = cli("run", "--resume", fields_run, "--set", "train.steps=6")
    assert code == 0, output
    assert json.loads((fields_run / "summary.json").read_text())["steps"] == 6
    code, output = cli("evaluate", fields_run, "--metric", "kid", "-n", 64)
    assert code == 0, output


@pytest.mark.parametrize("section, table, message", [
    ("dataset", {"use": "broken-data"},
     "dataset: dataset 'broken-data' (fields-gankit 0.1) failed: KeyError: 'no_such_column'"),
    ("export", [{"use": "broken-export"}],
     "export.0: exporter 'broken-export' (fields-gankit 0.1) failed: KeyError: 'no_such_column'"),
    ("dataset", {"use": "needs-module"},
     "dataset 'needs-module' (fields-gankit 0.1) needs the module 'no_such_module_xyz', which is not installed; "
     "install the package that provides 'no_such_module_xyz' (a requirement of fields-gankit)"),
])
def test_a_plugins_failure_of_any_type_is_one_line_naming_it_and_the_recipe(install, write_recipe, tmp_path,
                                                                           section, table, message):
    install("fields-gankit")
    recipe = write_recipe(**{section: table})
    code, output = cli("run", recipe, "--runs-dir", tmp_path / "runs")
    assert code == 2 and "Traceback" not in output
    assert output.strip().splitlines() == [f"error: {recipe}: {message}"]  # a missing module: invalid, like a typo
