"""Batches of runs at once: ``--jobs N`` (local processes) and ``--ray`` (a local Ray
cluster of two one-CPU workers, started once for the session) leave the runs a
sequential batch leaves; a failing run and a killed worker fail alone; Ctrl-C leaves
every run resumable."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from safetensors.numpy import load_file

from conftest import PATIENCE, gankit, recipe_dict, wait_for
from gankit.cli import main

NAMES = ("a", "b", "c", "d")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)



def write(folder: Path, name: str, **train) -> Path:
    """A tiny recipe; one torch thread everywhere, so that every way of running it gives the same bits."""
    path = folder / f"{name}.toml"
    recipe = recipe_dict(folder.parent / "mnist", name=name, seed=NAMES.index(name) if name in NAMES else 0,
                         backend={"use": "torch", "device": "cpu", "threads": 1},
                         train={"steps": 4, "log_every": 1, "checkpoint_every": 100, **train},
                         export=[{"use": "png", "every": 1000}])
    path.write_text(tomli_w.dumps(recipe))
    return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_mnist):
    """Four recipes, and the runs directory of their sequential batch."""
    folder = tmp_path_factory.mktemp("batch")
    (folder / "mnist").symlink_to(tiny_mnist)
    (folder / "recipes").mkdir()
    recipes = [write(folder / "recipes", name) for name in NAMES]
    result = cli("run", *recipes, "--runs-dir", folder / "sequential")
    assert result.exit_code == 0, result.output
    return folder, recipes


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    checkpoint = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return {f"{p.stem}.{k}": v for p in sorted(checkpoint.glob("*.safetensors")) for k, v in load_file(str(p)).items()}


def assert_same_runs(runs: Path, reference: Path) -> None:
    assert sorted(p.name for p in runs.iterdir()) == sorted(p.name for p in reference.iterdir())
    for expected in reference.iterdir():
        got = runs / expected.name
        assert json.loads((got / "summary.json").read_text())["status"] == "completed"
        mine, theirs = final_weights(got), final_weights(expected)
        assert mine.keys() == theirs.keys()
        for key in theirs:  # one thread each: bit-equal
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{expected.name} {key}")


def lock_holder(run_dir: Path) -> int:
    """The process that holds the run's lock: the worker training it."""
    lock = str(run_dir / ".lock")
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == lock:
                return int(fd.parent.parent.name)
        except OSError:
            continue
    raise AssertionError(f"no process holds {lock}")



def logged(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


def kill_one_fail_one(batch, tmp_path, *engine):
    """A good run, one that cannot start, one whose worker is killed, another good one."""
    folder, recipes = batch
    failing = write(folder / "recipes", "failing", batch_size=4096)
    victim = write(folder / "recipes", "victim", steps=100_000)
    runs = tmp_path / "runs"
    process = gankit("run", recipes[0], failing, victim, recipes[1], *engine, "--keep-going", "--runs-dir", runs)
    victim_dir = runs / "00002-victim"
    wait_for(lambda: logged(victim_dir) >= 2, process)
    os.kill(lock_holder(victim_dir), signal.SIGKILL)
    output, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 1, output
    rows = [line.split()[:2] for line in output[output.rindex("runs in"):].splitlines()[1:]]
    assert [row for row in rows if row and (row[0][:5].isdigit() or row[0] == "failing")] == [
        ["00000-a", "completed"], ["failing", "failed"], ["00002-victim", "failed"], ["00003-b", "completed"]]
    assert "the worker training it" in output and f"gankit run --resume {victim_dir}" in output.replace("\n", "")
    assert sorted(p.name for p in runs.iterdir()) == ["00000-a", "00002-victim", "00003-b"]  # 00001 given back


def test_jobs_2_leaves_the_runs_of_a_sequential_batch(batch, tmp_path):
    folder, recipes = batch
    result = cli("run", *recipes, "--jobs", "2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert_same_runs(tmp_path / "runs", folder / "sequential")


def test_jobs_2_a_failing_run_and_a_killed_worker_fail_alone(batch, tmp_path):
    kill_one_fail_one(batch, tmp_path, "--jobs", "2")


def test_jobs_2_ctrl_c_stops_every_run_resumably(batch, tmp_path):
    folder, _ = batch
    long = [write(folder / "recipes", name, steps=100_000, checkpoint_every=100_000) for name in ("long1", "long2")]
    runs = tmp_path / "runs"
    process = gankit("run", *long, "--jobs", "2", "--runs-dir", runs)
    wait_for(lambda: all(logged(runs / f"0000{i}-long{i + 1}") >= 2 for i in range(2)), process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, output
    stopped = {}
    for index in range(2):
        run_dir = runs / f"0000{index}-long{index + 1}"
        stopped[run_dir] = json.loads(sorted((run_dir / "checkpoints").glob("step_*"))[-1].joinpath("meta.json")
                                      .read_text())["step"]
        assert stopped[run_dir] >= 2
        assert f"gankit run --resume {run_dir}" in output.replace("\n", "")
    first = runs / "00000-long1"
    result = cli("run", "--resume", first, "--set", f"train.steps={stopped[first] + 2}")
    assert result.exit_code == 0, result.output


def test_ray_leaves_the_runs_of_a_sequential_batch(batch, tmp_path, ray_cluster):
    folder, recipes = batch
    result = cli("run", *recipes, "--ray", ray_cluster, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert_same_runs(tmp_path / "runs", folder / "sequential")


def test_ray_a_failing_run_and_a_killed_worker_fail_alone(batch, tmp_path, ray_cluster):
    kill_one_fail_one(batch, tmp_path, "--ray", ray_cluster)


def test_ray_refuses_a_runs_directory_its_workers_cannot_write(batch, tmp_path, ray_cluster):
    folder, recipes = batch
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user who can write anywhere")
    result = cli("run", *recipes, "--ray", ray_cluster, "--runs-dir", locked / "runs")
    assert result.exit_code == 2 and "cannot write" in result.output
