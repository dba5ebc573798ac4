"""Damaged caches heal, exporters cannot lose a run, files follow the umask, and a
TensorFlow run can be evaluated (TensorFlow and torchvision in one process)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import PATIENCE, overwrite_4kb, recipe_dict
from gankit import hookimpl
from gankit.cli import main
from gankit.data import DataContext
from gankit.eval_config import EvalConfig
from gankit.sampling import evaluate_run
from gankit.plugins import load_registry
from gankit.recipe import build_recipe
from gankit.runner import run
from gankit.rundir import RunDir


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_damaged_feature_cache_and_domain_classifier_are_named_discarded_and_rebuilt(write_recipe, tmp_path):
    pytest.importorskip("torch_fidelity")
    runs, cache = tmp_path / "runs", tmp_path / "eval-cache"
    assert cli("run", write_recipe(train={"steps": 2}), "--runs-dir", runs).exit_code == 0
    registry, config = load_registry(), EvalConfig(metrics=["fid"], features={"use": "domain", "steps": 20}, n=64)
    evaluate = lambda warnings: evaluate_run(registry, runs / "00000-tiny", config, cache_dir=cache,  # noqa: E731
                                             info=lambda _: None,
                                             warn=warnings.append)
    first = evaluate([])
    weights = next((cache / "domain").glob("*.safetensors"))
    features = next((cache / "eval" / "real").glob("*.npz"))
    overwrite_4kb(weights)
    features.write_bytes(features.read_bytes()[:300])
    warnings: list[str] = []
    again = evaluate(warnings)
    assert any(f"the cached domain classifier {weights} is damaged" in w for w in warnings), warnings
    assert any(f"the cached features {features} are damaged" in w for w in warnings), warnings
    assert again["scores"] == first["scores"]  # the same classifier, retrained from its seed
    warnings.clear()
    assert evaluate(warnings)["scores"] == first["scores"] and warnings == []  # healed for good


class Flaky:
    """A third-party exporter that breaks at its third event, as a buggy plugin would."""

    sample_every = None

    def __init__(self, params, run_dir):
        self.events = 0

    def handle(self, event):
        self.events += 1
        if self.events == 3:  # RunStarted, step 1, step 2
            raise RuntimeError("the exporter's server went away")


class FlakyPlugin:
    @hookimpl
    def register_exporters(self, register):
        register("flaky", Flaky, description="breaks at its third event")


@pytest.mark.parametrize("policy", ["disable", "stop"])
def test_an_exporter_that_raises_cannot_lose_the_run(tiny_mnist, tmp_path, policy):
    registry = load_registry([("flaky-plugin", FlakyPlugin(), "test")])
    table = recipe_dict(tiny_mnist, train={"steps": 6, "log_every": 1, "checkpoint_every": 0,
                                           "on_exporter_error": policy}, export=[{"use": "flaky"}, {"use": "png"}])
    warnings: list[str] = []
    result = run(build_recipe(table, tmp_path / "r.toml", registry), runs_root=tmp_path / "runs",
                 context=DataContext(warn=warnings.append, info=lambda _: None))
    assert len(warnings) == 1
    assert "exporter 'flaky' failed at step 2 (RuntimeError: the exporter's server went away)" in warnings[0]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    if policy == "disable":
        assert result.finished.status == "completed" and summary["steps"] == 6
        assert (result.run_dir / "samples" / "step_00000006.png").is_file()  # the other exporter went on
    else:
        assert result.finished.status == "failed" and summary["status"] == "failed" and summary["steps"] == 3
        assert [p.name for p in RunDir(result.run_dir).list_checkpoints()] == ["step_00000003"]
        assert "resume with: gankit run --resume" in result.finished.message


def test_files_and_folders_a_run_writes_follow_the_umask(write_recipe, tmp_path):
    previous = os.umask(0o022)
    try:
        assert cli("run", write_recipe(train={"steps": 2}), "--runs-dir", tmp_path / "runs").exit_code == 0
    finally:
        os.umask(previous)
    written = list((tmp_path / "runs").rglob("*"))
    assert any(p.suffix == ".png" for p in written) and any(p.name == "state.pt" for p in written)
    for path in written:
        expected = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_evaluating_a_tensorflow_run_works_in_a_fresh_process(write_recipe, tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch_fidelity")
    recipe = write_recipe(backend={"use": "tensorflow", "device": "cpu"}, train={"steps": 2}, export=[])
    runs = tmp_path / "runs"
    gankit = [sys.executable, "-m", "gankit"]
    trained = subprocess.run([*gankit, "run", recipe, "--runs-dir", runs], capture_output=True, text=True, timeout=PATIENCE)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    evaluated = subprocess.run([*gankit, "evaluate", runs / "00000-tiny", "--metric", "fid", "-n", "64"],
                               capture_output=True, text=True, timeout=PATIENCE)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr  # -11 was a segmentation fault
    record = json.loads((runs / "00000-tiny" / "eval.json").read_text())["evaluations"]["domain"]
    assert record["generated"]["backend"] == "tensorflow" and record["scores"]["fid"] > 0
