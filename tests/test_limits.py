"""Everything checked before a run directory exists, batches that survive a crashing run,
and disks that are full, read-only or in the way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import PATIENCE
from gankit.cli import main
from gankit.rundir import RunDir

SMALL_DCGAN = {"use": "dcgan", "g_start_channels": 16,
               "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def refused(result, *expected: str) -> str:
    """Assert exit 2 with a one-line error containing each of ``expected``; return the line."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


INVALID_ARCHITECTURES = {
    "generator_output_is_not_the_image_size": (
        {"architecture": {**SMALL_DCGAN, "g_layers": [{"filters": 8, "kernel": 3, "stride": 2, "padding": "valid"},
                                                      {"kernel": 3, "stride": 2}]}},
        "the generator makes (30, 30, 1) images but the data is (28, 28, 1)"),
    "d_kernel_larger_than_its_feature_map": (
        {"architecture": {**SMALL_DCGAN, "d_layers": [{"filters": 8, "kernel": 5, "stride": 2, "padding": "valid"},
                                                      {"filters": 8, "kernel": 15, "padding": "valid"}]}},
        "15x15 kernel is larger than its 12x12 input"),
    "batchnorm_with_batch_size_1": (
        {"train": {"batch_size": 1}},
        "generator layer 1 (BatchNorm) would normalise a single value per channel with batch size 1"),
    "g_start_channels_needing_terabytes": (
        {"architecture": {**SMALL_DCGAN, "g_start_channels": 1_000_000_000}},
        "GiB of memory; make the networks smaller"),
    "run_name_longer_than_a_file_name": ({"name": "n" * 250}, "name: 250 bytes, longer than the 249"),
    "sweep_label_longer_than_a_file_name": (
        {"sweep": {"architecture.init": ["normal:0." + "0" * 240 + "2"]}}, "longer than the 249"),
}


@pytest.mark.parametrize("case", INVALID_ARCHITECTURES, ids=list(INVALID_ARCHITECTURES))
def test_refused_in_one_line_before_the_run_directory_exists(write_recipe, tmp_path, case):
    sections, expected = INVALID_ARCHITECTURES[case]
    runs = tmp_path / "runs"
    refused(cli("run", write_recipe(**sections), "--runs-dir", runs), expected)
    assert not runs.exists()


def test_a_crashing_run_in_a_keep_going_batch_is_one_failed_row(write_recipe, tmp_path, monkeypatch):
    from gankit_plugins.torch_backend.trainer import TorchTrainer

    original = TorchTrainer.train_step

    def out_of_memory_at_lr_0_1(self, batches, step):
        if self.train.lr_g == 0.1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\n(a second line)")
        return original(self, batches, step)

    monkeypatch.setattr(TorchTrainer, "train_step", out_of_memory_at_lr_0_1)
    recipe = write_recipe(sweep={"train.lr_g": [1e-4, 0.1, 2e-4]}, train={"steps": 2})
    runs = tmp_path / "runs"
    result = cli("run", recipe, "--keep-going", "--runs-dir", runs)
    assert result.exit_code == 1
    assert "crashed: RuntimeError: CUDA out of memory" in result.output
    assert result.output.count("completed") == 2 and "runs" in result.output  # the table
    crashed = json.loads((runs / "00001-tiny-lr_g0.1" / "summary.json").read_text())
    assert crashed["status"] == "failed" and crashed["steps"] == 0
    assert "RuntimeError at step 0" in crashed["message"]


def test_a_sweep_past_the_bound_is_refused_before_expanding_also_in_a_dry_run(write_recipe, tmp_path):
    huge = write_recipe(sweep={"train.lr_g": [1e-4 * (i + 1) for i in range(101)], "seed": list(range(100))})
    for extra in ([], ["--dry-run"]):
        refused(cli("run", huge, *extra, "--runs-dir", tmp_path / "runs"),
                "10,100 combinations, more than the 10,000 runs allowed", "--max-runs 10100")
    six = write_recipe("six.toml", sweep={"train.lr_g": [1e-4, 2e-4, 3e-4], "seed": [0, 1]})
    refused(cli("run", six, "--dry-run", "--max-runs", 5), "pass --max-runs 6")
    refused(cli("run", six, six, "--dry-run", "--max-runs", 10), "takes the batch to 12 runs", "--max-runs 12")
    result = cli("run", six, "--dry-run", "--max-runs", 6)
    assert result.exit_code == 0 and result.output.count("# ") == 6
    assert not (tmp_path / "runs").exists()


def test_a_recipe_path_that_is_a_fifo_or_a_device_is_refused(tmp_path):
    fifo = tmp_path / "recipe.toml"
    os.mkfifo(fifo)
    refused(cli("run", fifo, "--runs-dir", tmp_path / "runs"), "not a regular file")
    refused(cli("run", "/dev/zero", "--runs-dir", tmp_path / "runs"), "/dev/zero: not a regular file")


def test_a_runs_directory_that_is_a_file_is_refused_before_loading(write_recipe, tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    refused(cli("run", write_recipe(), "--runs-dir", runs), f"{runs} is a file, not a folder")
    refused(cli("run", write_recipe(), "--runs-dir", runs / "sub"), "is a file, not a folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_runs_directory_without_write_permission_is_refused(write_recipe, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    refused(cli("run", write_recipe(), "--runs-dir", folder / "runs"), "cannot write in", "Permission denied")


def test_sample_onto_an_unwritable_path_is_one_line(tmp_path, write_recipe):
    runs = tmp_path / "runs"
    assert cli("run", write_recipe(train={"steps": 2}), "--runs-dir", runs).exit_code == 0
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")
    refused(cli("sample", runs / "00000-tiny", "-o", in_the_way / "grid.png"), "-o", "is a file, not a folder")
    folder = tmp_path / "grid.png"
    folder.mkdir()
    refused(cli("sample", runs / "00000-tiny", "-o", folder), f"-o {folder}: cannot write it")


def test_a_disk_that_fills_mid_checkpoint_ends_in_one_line_keeping_the_last_checkpoint(
        write_recipe, tmp_path, monkeypatch):
    """Simulated: the trainer's second save meets ENOSPC from the kernel (/dev/full)."""
    from gankit_plugins.torch_backend.trainer import TorchTrainer

    original, saves = TorchTrainer.save, []

    def save_onto_a_full_disk(self, directory):
        original(self, directory)
        saves.append(directory)
        if len(saves) == 2:
            with open("/dev/full", "wb") as full:
                full.write(b"\0" * 65536)
                full.flush()

    monkeypatch.setattr(TorchTrainer, "save", save_onto_a_full_disk)
    runs = tmp_path / "runs"
    result = cli("run", write_recipe(train={"steps": 6, "checkpoint_every": 2}), "--runs-dir", runs)
    run_dir = runs / "00000-tiny"
    assert result.exit_code == 1
    assert " ".join(result.output.split()).endswith(
        f"error: no space left on device writing {run_dir / 'checkpoints' / 'step_00000004'}; stopped at step 4; "
        f"the last good checkpoint is {run_dir / 'checkpoints' / 'step_00000002'}")
    assert [p.name for p in RunDir(run_dir).list_checkpoints()] == ["step_00000002"]
    assert not list(run_dir.rglob("*.partial"))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def small_filesystem(size: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` with a fresh tmpfs of ``size`` mounted on $SMALL, in a user namespace."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare to mount a small file system")
    command = f'SMALL=$(mktemp -d) && mount -t tmpfs -o size={size} tmpfs "$SMALL" || exit 77; {script}'
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", command],
                          capture_output=True, text=True, timeout=PATIENCE)
    if done.returncode == 77 or "unshare:" in done.stderr:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()}")
    return done


def test_a_real_small_file_system_fills_during_the_second_checkpoint(write_recipe):
    recipe = write_recipe(train={"steps": 100, "checkpoint_every": 5, "keep_checkpoints": 100}, export=[])
    done = small_filesystem("1000k", f'{sys.executable} -m gankit run {recipe} --runs-dir "$SMALL/runs"; '
                                     'echo "exit $?"; ls "$SMALL/runs/00000-tiny/checkpoints"; '
                                     'cat "$SMALL/runs/00000-tiny/summary.json"')
    output = done.stdout + done.stderr
    assert "exit 1" in output, output
    assert "no space left on device writing" in " ".join(output.split()) and "Traceback" not in output
    assert "the last good checkpoint is" in output and "unexpected pos" not in output
    assert "step_00000005" in output and '"status": "failed"' in output


def test_a_real_read_only_file_system_is_refused_before_training(write_recipe):
    recipe = write_recipe()
    done = small_filesystem("100k", f'mount -o remount,ro "$SMALL" && '
                                    f'{sys.executable} -m gankit run {recipe} --runs-dir "$SMALL/runs"; echo "exit $?"')
    output = " ".join((done.stdout + done.stderr).split())
    assert "exit 2" in output and "cannot write in" in output and "Read-only file system" in output
