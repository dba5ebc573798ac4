"""Runs you cannot lose: damaged checkpoints, edited recipes, and every way a process ends
(SIGKILL, SIGHUP, Ctrl-C during start-up), each caused as a user would cause it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import tomli_w

from gankit import checkpoints
from gankit.rundir import MANIFEST, RunDir
from conftest import PATIENCE, checkpoint, cli, gankit, one_line, overwrite_4kb, recipe_dict, wait_for
from test_runs import metric_steps


def test_every_checkpoint_lists_the_sha256_of_each_of_its_files(run_dir):
    for each in RunDir(run_dir).list_checkpoints():
        listed = json.loads((each / MANIFEST).read_text())["sha256"]
        assert sorted(listed) == sorted(p.name for p in each.iterdir() if p.name != MANIFEST)
        assert {"meta.json", "generator.safetensors", "discriminator.safetensors", "state.pt"} <= listed.keys()


def test_weights_overwritten_by_0xff_are_never_used_and_the_file_is_named(run_dir, tmp_path):
    damaged = checkpoint(run_dir, 6) / "generator.safetensors"
    overwrite_4kb(damaged)
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())

    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2
    message = one_line(result.output)
    assert str(damaged) in message and "sha256" in message
    assert f"is {checkpoint(run_dir, 4)}: delete {checkpoint(run_dir, 6)} to use it" in message

    result = cli("sample", run_dir, "-o", tmp_path / "grid.png")
    assert result.exit_code == 2 and str(damaged) in one_line(result.output)
    assert not (tmp_path / "grid.png").exists()
    result = cli("evaluate", run_dir, "--checkpoint", "step_00000006", "-n", "8")
    assert result.exit_code == 2 and str(damaged) in one_line(result.output)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before  # nothing deleted
    assert checkpoints.last_good(RunDir(run_dir)) == checkpoint(run_dir, 4)


def test_a_half_deleted_checkpoint_is_refused_naming_the_missing_file(run_dir):
    missing = checkpoint(run_dir, 6) / "discriminator.safetensors"
    missing.unlink()
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2
    assert f"{missing} cannot be loaded (error: missing)" in one_line(result.output)


def test_no_advice_to_delete_when_no_earlier_checkpoint_verifies(run_dir):
    for step in (2, 4, 6):
        overwrite_4kb(checkpoint(run_dir, step) / "state.pt")
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2
    message = one_line(result.output)
    assert "none of the 2 earlier checkpoint(s) verifies and loads with this recipe.toml either" in message
    assert "nothing was deleted" in message and "delete " not in message.replace("nothing was deleted", "")
    assert len(RunDir(run_dir).list_checkpoints()) == 3


def test_resume_refuses_an_edited_recipe_but_not_a_longer_one(run_dir):
    recipe = run_dir / "recipe.toml"
    original = recipe.read_text()
    recipe.write_text(original.replace("lr_g = 0.0002", "lr_g = 0.001"))
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2
    assert f"{recipe} was edited after the run started" in one_line(result.output)
    assert len(result.output.strip().splitlines()) <= 2  # one line, however the terminal wraps it
    recipe.write_text(original.replace("steps = 6", "steps = 8"))
    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert metric_steps(run_dir) == [2, 4, 6, 8]


def long_recipe(tmp_path: Path, tiny_mnist: Path, **train) -> Path:
    recipe = tmp_path / "long.toml"
    settings = {"steps": 1_000_000, "log_every": 1, "checkpoint_every": 5, **train}
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, name="long", train=settings, export=[])))
    return recipe


def test_after_sigkill_resume_repairs_metrics_clears_staging_and_holds_a_lock(tmp_path, tiny_mnist):
    runs = tmp_path / "runs"
    run_dir = runs / "00000-long"
    process = gankit("run", long_recipe(tmp_path, tiny_mnist), "--runs-dir", runs)
    def logged_past_a_checkpoint() -> bool:
        found = RunDir(run_dir).list_checkpoints()  # a checkpoint comes after its step's metrics line
        return len(found) >= 2 and metric_steps(run_dir)[-1] > json.loads((found[-1] / "meta.json").read_text())["step"]

    wait_for(logged_past_a_checkpoint, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=PATIENCE)
    last = json.loads((RunDir(run_dir).list_checkpoints()[-1] / "meta.json").read_text())["step"]
    assert metric_steps(run_dir)[-1] > last  # steps past the checkpoint were logged
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 9999, "d_lo')  # what a kill in the middle of a write leaves
    staging = run_dir / "checkpoints" / f".step_{last + 5:08d}.k1ll3d_x.partial"
    staging.mkdir()
    (staging / "generator.safetensors").write_bytes(b"half")

    resumed = gankit("run", "--resume", run_dir)
    wait_for(lambda: '9999' not in (run_dir / "metrics.jsonl").read_text() and metric_steps(run_dir)[-1] > last + 5,
             resumed)
    assert not staging.exists()
    second = cli("run", "--resume", run_dir)
    assert second.exit_code == 2 and "in use by another gankit process" in one_line(second.output)
    resumed.send_signal(signal.SIGHUP)  # the terminal was closed
    output, _ = resumed.communicate(timeout=PATIENCE)
    assert resumed.returncode == 130, output
    assert f"gankit run --resume {run_dir}" in output.replace("\n", "")
    steps = metric_steps(run_dir)
    assert steps == list(range(1, steps[-1] + 1))  # each step logged once, in order, no torn line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] == steps[-1]
    assert json.loads((RunDir(run_dir).list_checkpoints()[-1] / "meta.json").read_text())["step"] == steps[-1]
    assert not list(run_dir.rglob("*.partial"))


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path, tiny_mnist):
    runs = tmp_path / "runs"
    run_dir = runs / "00000-long"
    process = gankit("run", long_recipe(tmp_path, tiny_mnist, checkpoint_every=0, log_every=2), "--runs-dir", runs)
    wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and len(metric_steps(run_dir)) >= 5, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=PATIENCE)
    assert RunDir(run_dir).list_checkpoints() == []
    result = cli("run", "--resume", run_dir, "--set", "train.steps=6")
    assert result.exit_code == 0, result.output
    assert metric_steps(run_dir) == [2, 4, 6]


def test_an_empty_run_directory_is_named_with_the_command_that_removes_it(tmp_path):
    empty = tmp_path / "runs" / "00000-tiny"
    empty.mkdir(parents=True)
    result = cli("run", "--resume", empty)
    assert result.exit_code == 2
    assert f"is empty (the run was stopped before it began); remove it with: rm -r {empty}" in one_line(result.output)


@pytest.mark.parametrize("delay", [0.2, 1.0, 2.5])
def test_ctrl_c_during_start_up_is_a_clean_exit(tmp_path, tiny_mnist, delay):
    runs = tmp_path / "runs"
    process = gankit("run", long_recipe(tmp_path, tiny_mnist, checkpoint_every=0), "--runs-dir", runs)
    time.sleep(delay)
    if runs.exists():
        pytest.skip("this machine started training before the signal was sent")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, output
    assert "Traceback" not in output and output.strip()
    run_dir = runs / "00000-long"
    assert not run_dir.exists() or RunDir(run_dir).list_checkpoints(), "a run that began was stopped with a checkpoint"


def test_a_damaged_tensorflow_checkpoint_is_refused_too(tiny_mnist, tmp_path):
    pytest.importorskip("tensorflow")
    recipe = tmp_path / "tf.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, backend={"use": "tensorflow", "device": "cpu"},
                                                train={"steps": 4, "checkpoint_every": 2}, export=[])))
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    run_dir = tmp_path / "runs" / "00000-tiny"
    damaged = max((p for p in checkpoint(run_dir, 4).iterdir() if p.name not in (MANIFEST, "meta.json")),
                  key=lambda p: p.stat().st_size)
    overwrite_4kb(damaged)
    result = cli("run", "--resume", run_dir, "--set", "train.steps=6")
    assert result.exit_code == 2
    message = one_line(result.output)
    assert str(damaged) in message and f"delete {checkpoint(run_dir, 4)} to use it" in message


def test_closing_the_terminal_stops_the_run_with_a_checkpoint(tmp_path, tiny_mnist):
    """A real hang-up: gankit runs on a pseudo-terminal as its controlling terminal, and the
    terminal goes away; writing to it fails from then on, as after a dropped SSH session."""
    import fcntl
    import os
    import pty
    import subprocess
    import sys
    import termios
    import threading

    master, slave = pty.openpty()

    def take_the_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    runs = tmp_path / "runs"
    run_dir = runs / "00000-long"
    process = subprocess.Popen([sys.executable, "-m", "gankit", "run", long_recipe(tmp_path, tiny_mnist), "--runs-dir",
                                runs], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                               preexec_fn=take_the_terminal)
    os.close(slave)

    def drain():
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    wait_for(lambda: len(RunDir(run_dir).list_checkpoints()) >= 1 and len(metric_steps(run_dir)) >= 8, process)
    os.close(master)  # the terminal hangs up: SIGHUP, and writes to it fail
    assert process.wait(timeout=PATIENCE) == 130
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert json.loads((RunDir(run_dir).list_checkpoints()[-1] / "meta.json").read_text())["step"] == summary["steps"]


def test_waiting_on_a_process_ends_with_the_process_not_with_a_clock(tmp_path):
    """A test waits on what the process does; one that ends without doing it fails at once
    with its output, however fast or slow the machine (issue 25)."""
    import subprocess
    import sys

    from conftest import wait_for

    marker = tmp_path / "made"
    maker = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(1); open({str(marker)!r}, 'w')"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(marker.exists, maker)
    maker.wait()
    quitter = subprocess.Popen([sys.executable, "-c", "print('gave up early')"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    with pytest.raises(AssertionError, match="gave up early"):
        wait_for(lambda: False, quitter)
