"""One run on two processes (torchrun, gloo on CPU): each takes half of every batch, the
gradients and BatchNorm statistics are the whole batch's, so it ends where one process
ends; and it resumes exactly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from conftest import PATIENCE
from gankit.cli import main

TRAIN = {"batch_size": 32, "log_every": 1, "checkpoint_every": 100}


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    checkpoint = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return {f"{p.stem}.{k}": v for p in sorted(checkpoint.glob("*.safetensors")) for k, v in load_file(str(p)).items()}


def torchrun(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "gankit", "run", *map(str, args)], capture_output=True, text=True, timeout=PATIENCE)


@pytest.fixture
def recipe(write_recipe):
    """The MLP with BatchNorm in G (synchronised) and no dropout (its masks are drawn per process)."""
    return write_recipe(architecture={"use": "mlp", "g_hidden": [32], "d_hidden": [32], "d_dropout": 0.0},
                        backend={"use": "torch", "device": "cpu", "threads": 1, "sync_batchnorm": True},
                        train={"steps": 6, **TRAIN}, export=[])


def test_two_processes_end_where_one_ends_and_resume_exactly(recipe, tmp_path):
    one = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(tmp_path / "one")], catch_exceptions=False)
    assert one.exit_code == 0, one.output
    two = torchrun(recipe, "--runs-dir", tmp_path / "two")
    assert two.returncode == 0, two.stdout + two.stderr
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["00000-tiny"]  # rank 0 alone wrote
    reference, ours = final_weights(tmp_path / "one" / "00000-tiny"), final_weights(tmp_path / "two" / "00000-tiny")
    assert ours.keys() == reference.keys()
    for key in reference:
        # G's first bias feeds BatchNorm, which cancels it: its true gradient is zero, and Adam
        # turns the rounding noise into steps of up to lr each (so does the mean BatchNorm tracks).
        cancelled = key in ("generator.0.bias", "generator.1.running_mean")
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-4, atol=6 * 2e-4 if cancelled else 1e-5,
                                   err_msg=key)
    logged = [json.loads(line) for line in (tmp_path / "two" / "00000-tiny" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in logged] == [1, 2, 3, 4, 5, 6]

    stopped = torchrun(recipe, "--set", "train.steps=3", "--runs-dir", tmp_path / "resumed")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    run_dir = tmp_path / "resumed" / "00000-tiny"
    resumed = torchrun("--resume", run_dir, "--set", "train.steps=6")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = final_weights(run_dir)
    for key in ours:
        np.testing.assert_array_equal(again[key], ours[key], err_msg=key)


def test_gpus_without_enough_gpus_is_a_one_line_error(recipe):
    import torch

    wanted = torch.cuda.device_count() + 1
    result = CliRunner().invoke(main, ["run", str(recipe), "--gpus", str(wanted)])
    assert result.exit_code == 2 and f"--gpus {wanted}: this machine has" in result.output


def test_gpus_with_a_backend_that_trains_in_one_process_is_a_one_line_error(write_recipe):
    """The tensorflow backend offers no launcher: ``--gpus`` is refused before anything starts."""
    recipe = write_recipe(backend={"use": "tensorflow", "device": "cpu"}, train={"steps": 2, **TRAIN}, export=[])
    result = CliRunner().invoke(main, ["run", str(recipe), "--gpus", "2"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: --gpus 2: backend 'tensorflow' trains a run in one process only; leave out --gpus, or choose a "
        "backend that trains on several (gankit list-plugins --kind backend)"], result.output


def test_the_core_names_no_launcher_or_collectives_of_torch():
    """The framework-free core asks the run's backend for its processes: torch's launcher and
    collectives are the torch backend's."""
    from gankit import cli, distributed, runner

    for module in (cli, distributed, runner):
        assert re.findall(r"import torch|torch\.|torchrun", Path(module.__file__).read_text()) == [], module
