"""gankit new-plugin: the example package is its output, and each kind makes a package that
registers its component and is lint-clean. (CI installs the example and a fresh package and
runs their own tests: .ci/run.)"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import install_outside_package
from gankit.cli import main
from gankit.plugins import load_registry
from gankit.recipe import build_recipe, read_toml
from gankit.scaffold import PLUGIN_KINDS, render

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gankit-example-plugin"
BUILT = {"__pycache__", ".pytest_cache", "build", "runs"}


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_the_example_package_is_exactly_what_new_plugin_writes():
    committed = {str(p.relative_to(EXAMPLE)): p.read_text() for p in EXAMPLE.rglob("*")
                 if p.is_file() and not BUILT & set(p.relative_to(EXAMPLE).parts)
                 and not any(part.endswith(".egg-info") for part in p.parts)}
    assert committed == render("example-plugin", list(PLUGIN_KINDS)), \
        "regenerate it: rm -r examples/gankit-example-plugin && gankit new-plugin example-plugin " \
        "--kind architecture --kind dataset --kind exporter --kind metric -o examples"


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_each_kind_makes_a_package_that_registers_it_and_lints_clean(kind, tmp_path):
    code, output = cli("new-plugin", f"my-{kind}", "--kind", kind, "-o", tmp_path)
    assert code == 0, output
    folder = tmp_path / f"gankit-my-{kind}"
    module_file = folder / f"gankit_my_{kind}" / "__init__.py"
    spec = importlib.util.spec_from_file_location(f"scaffolded_{kind}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registry = load_registry([(f"my-{kind}", module, f"gankit-my-{kind} 0.1.0")])
    assert registry.problems() == []
    provided = [(c.kind, c.name) for c in registry.components.values() if c.provider.startswith("gankit-my-")]
    assert provided == [(kind, f"my-{kind}")]
    build_recipe(read_toml(folder / "recipe.toml"), folder / "recipe.toml", registry)
    assert f'name = "gankit-my-{kind}"' in (folder / "pyproject.toml").read_text()
    assert f'my-{kind} = "gankit_my_{kind}"' in (folder / "pyproject.toml").read_text()
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(folder)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_new_plugin_refuses_a_taken_folder_and_a_bad_name(tmp_path):
    assert cli("new-plugin", "twice", "--kind", "dataset", "-o", tmp_path)[0] == 0
    code, output = cli("new-plugin", "twice", "--kind", "exporter", "-o", tmp_path)
    assert code == 2 and output.strip() == f"error: {tmp_path / 'gankit-twice'} already exists; choose another name or remove it"
    code, output = cli("new-plugin", "Bad_Name", "--kind", "dataset", "-o", tmp_path)
    assert code == 2 and "'Bad_Name': use lowercase letters" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gankit-twice"]


def test_a_metric_package_passes_its_own_tests_installed_as_outside_packages_are(tmp_path):
    """What .ci/run does with pip for the example package (every kind), here for the metric
    kind alone and without pip: its tests, which call check_metric, pass."""
    assert cli("new-plugin", "my-metric", "--kind", "metric", "-o", tmp_path)[0] == 0
    folder = tmp_path / "gankit-my-metric"
    site = install_outside_package(tmp_path / "site", "gankit-my-metric", "gankit_my_metric",
                                   (folder / "gankit_my_metric" / "__init__.py").read_text(),
                                   {"my-metric": "gankit_my_metric"})
    shutil.rmtree(folder / "gankit_my_metric")  # the installed copy is the one the tests import
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=folder,
                            env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert result.returncode == 0 and "3 passed" in result.stdout, result.stdout + result.stderr
