"""Batches, sweeps, lossless resume, Ctrl-C, divergence and damaged checkpoints."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from conftest import PATIENCE, gankit, wait_for
from gankit.cli import main
from gankit.plugins import load_registry

BACKENDS = [
    "torch",
    pytest.param("tensorflow", marks=pytest.mark.skipif(
        ("backend", "tensorflow") not in load_registry().components, reason="tensorflow backend not installed")),
]
SMALL_DCGAN = {"use": "dcgan", "g_start_channels": 16,
               "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)



def weights(checkpoint: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(checkpoint.iterdir()):
        if path.suffix == ".safetensors":
            found.update({f"{path.stem}.{k}": v for k, v in load_file(str(path)).items()})
    return found


def final_checkpoint(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").glob("step_*"))[-1]


def metric_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_sweep_of_two_by_two_gives_four_named_runs(write_recipe, tmp_path):
    recipe = write_recipe(sweep={"train.lr_g": [1e-4, 2e-4], "architecture.g_hidden": [[16], [32]]},
                          train={"steps": 2})
    result = cli("run", recipe, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["00000-tiny-lr_g0.0001-g_hidden16", "00001-tiny-lr_g0.0001-g_hidden32",
                     "00002-tiny-lr_g0.0002-g_hidden16", "00003-tiny-lr_g0.0002-g_hidden32"]
    resolved = (tmp_path / "runs" / names[3] / "recipe.toml").read_text()
    assert "lr_g = 0.0002" in resolved and "g_hidden = [\n    32,\n]" in resolved
    assert "runs" in result.output and "completed" in result.output  # the summary table


def test_a_bad_sweep_is_a_one_line_error(write_recipe, tmp_path):
    result = cli("run", write_recipe(sweep={"train.lr_g": 1e-4}), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "sweep.train.lr_g: expected a non-empty list" in result.output


def test_a_batch_with_an_invalid_middle_recipe(write_recipe, tmp_path):
    first = write_recipe("first.toml", name="first", train={"steps": 2})
    broken = write_recipe("broken.toml", name="broken", train={"steps": 2, "batch_sise": 4})
    last = write_recipe("last.toml", name="last", train={"steps": 2})
    runs = tmp_path / "runs"
    result = cli("run", first, broken, last, "--runs-dir", runs)
    assert result.exit_code == 2 and "train.batch_sise: unknown key" in result.output
    assert not runs.exists()
    result = cli("run", first, broken, last, "--keep-going", "--runs-dir", runs)
    assert result.exit_code == 1
    assert sorted(p.name for p in runs.iterdir()) == ["00000-first", "00001-last"]
    assert "invalid" in result.output and "completed" in result.output


def test_a_failing_run_stops_the_batch_unless_keep_going(write_recipe, tmp_path, tiny_mnist):
    good = write_recipe("good.toml", name="good", train={"steps": 2})
    failing = write_recipe("failing.toml", name="failing", train={"steps": 2, "batch_size": 4096})
    result = cli("run", failing, good, "--runs-dir", tmp_path / "a")
    assert result.exit_code == 1 and "skipped" in result.output
    assert not (tmp_path / "a").exists()
    result = cli("run", failing, good, "--keep-going", "--runs-dir", tmp_path / "b")
    assert result.exit_code == 1 and [p.name for p in (tmp_path / "b").iterdir()] == ["00000-good"]



@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_then_resume_ends_with_the_same_weights(write_recipe, tmp_path, backend):
    # The interrupted run is set to train far longer than the test waits, so the signal
    # always lands mid-run; the resume and the straight run then both end at stopped_at + 20.
    # torch's thread count is process-wide and other tests set it: the interrupted run (its
    # own process) and the two here must use the same one to agree bit for bit.
    threads = {"threads": 1} if backend == "torch" else {}
    recipe = write_recipe(architecture=SMALL_DCGAN, backend={"use": backend, "device": "cpu", **threads},
                          train={"steps": 1_000_000, "log_every": 1, "checkpoint_every": 100, "batch_size": 16},
                          export=[{"use": "png", "every": 50}, {"use": "gif"}])
    runs = tmp_path / "stopped"
    process = gankit("run", recipe, "--runs-dir", runs)
    run_dir = runs / "00000-tiny"
    wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and len(metric_steps(run_dir)) >= 3, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, output
    assert f"gankit run --resume {run_dir}" in output.replace("\n", "")
    stopped_at = json.loads((final_checkpoint(run_dir) / "meta.json").read_text())["step"]
    assert stopped_at >= 3
    logged_before = (run_dir / "metrics.jsonl").read_text()
    steps = stopped_at + 20

    result = cli("run", "--resume", run_dir, "--set", f"train.steps={steps}")
    assert result.exit_code == 0, result.output
    assert (run_dir / "metrics.jsonl").read_text().startswith(logged_before)  # appended, never rewritten
    assert metric_steps(run_dir)[-1] == steps
    straight = tmp_path / "straight"
    result = cli("run", recipe, "--runs-dir", straight, "--set", f"train.steps={steps}")
    assert result.exit_code == 0, result.output
    resumed, reference = weights(final_checkpoint(run_dir)), weights(final_checkpoint(straight / "00000-tiny"))
    assert resumed.keys() == reference.keys()
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_a_second_ctrl_c_aborts_at_once_leaving_no_partial_file(write_recipe, tmp_path):
    recipe = write_recipe(architecture=SMALL_DCGAN, train={"steps": 100000, "log_every": 1, "checkpoint_every": 5})
    runs = tmp_path / "runs"
    process = gankit("run", recipe, "--runs-dir", runs)
    run_dir = runs / "00000-tiny"
    wait_for(lambda: (run_dir / "checkpoints").is_dir() and len(list((run_dir / "checkpoints").iterdir())) >= 2, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    leftovers = [p for p in run_dir.rglob(".*") if p.name != ".lock"]
    assert leftovers == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] in ("aborted", "interrupted")
    # The step reached: the last one logged, or one past it when the abort fell between
    # the end of a step and its metrics line; never the step the run started from.
    assert summary["steps"] - 1 <= metric_steps(run_dir)[-1] <= summary["steps"]
    assert summary["steps"] >= json.loads((final_checkpoint(run_dir) / "meta.json").read_text())["step"] > 0
    if summary["status"] == "aborted":
        assert summary["message"].startswith(f"aborted at step {summary['steps']};")


def test_resume_latest_and_train_longer(write_recipe, tmp_path):
    runs = tmp_path / "runs"
    recipe = write_recipe(train={"steps": 4})
    assert cli("run", recipe, "--runs-dir", runs).exit_code == 0
    result = cli("run", "--resume", "latest", "--runs-dir", runs)
    assert result.exit_code == 2 and "already trained to step 4 of 4" in result.output
    result = cli("run", "--resume", "latest", "--runs-dir", runs, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output
    assert metric_steps(runs / "00000-tiny") == [2, 4, 6, 8]
    result = cli("run", "--resume", "latest", "--runs-dir", runs, "--set", "train.lr_g=0.1")
    assert result.exit_code == 2 and "can only change train.steps or train.epochs" in result.output


def test_only_the_last_k_checkpoints_are_kept(write_recipe, tmp_path):
    recipe = write_recipe(train={"steps": 6, "checkpoint_every": 1, "keep_checkpoints": 2})
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    kept = sorted(p.name for p in (tmp_path / "runs" / "00000-tiny" / "checkpoints").iterdir())
    assert kept == ["step_00000005", "step_00000006"]


def test_a_corrupt_checkpoint_names_the_file_and_the_previous_one(write_recipe, tmp_path):
    runs = tmp_path / "runs"
    assert cli("run", write_recipe(train={"steps": 6, "checkpoint_every": 2}), "--runs-dir", runs).exit_code == 0
    run_dir = runs / "00000-tiny"
    damaged = run_dir / "checkpoints" / "step_00000006" / "generator.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert str(damaged) in message and "step_00000004" in message
    result = cli("sample", run_dir, "-o", tmp_path / "grid.png")
    assert result.exit_code == 2 and "generator.safetensors" in result.output


def test_divergence_stops_the_run_and_points_at_the_last_good_checkpoint(write_recipe, tmp_path):
    recipe = write_recipe(train={"steps": 20, "checkpoint_every": 2, "log_every": 4, "max_loss": 1e-9})
    result = cli("run", recipe, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "training diverged at step 2" in message and "train.max_loss" in message
    assert "no checkpoint that verifies was saved before it" in message
    summary = json.loads((tmp_path / "runs" / "00000-tiny" / "summary.json").read_text())
    assert summary["status"] == "diverged"
