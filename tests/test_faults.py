"""Faults, round two (issue 23): a run killed after its last checkpoint can be finished, a
checkpoint missing a file is reported and never silently skipped, and a run's recipe is
checked against what trained it by every command. Each fault is made the way a user
would meet it: real signals to real processes, real damaged files."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from conftest import PATIENCE, checkpoint, cli, gankit, one_line, recipe_dict, wait_for
from gankit.recipe import read_toml
from gankit import checkpoints
from gankit.rundir import RunDir


def digests(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder``, by relative path: byte-identical or not."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_killed_after_its_last_checkpoint_is_finished_by_resume(tmp_path, tiny_mnist):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, train={"steps": 6, "checkpoint_every": 2})))
    run_dir = tmp_path / "runs" / "00000-tiny"
    process = gankit("run", recipe, "--runs-dir", tmp_path / "runs")
    final = checkpoint(run_dir, 6)
    while not final.is_dir():  # the checkpoint appears whole (renamed into place); kill at once
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=PATIENCE)
    if (run_dir / "summary.json").exists():
        pytest.skip("the run wrote its end before the kill landed")
    assert not (run_dir / "progress.gif").exists()
    report = cli("report", run_dir, "-o", tmp_path / "before.html")
    assert report.exit_code == 0, report.output
    text = one_line((tmp_path / "before.html").read_text())
    assert f"finish it with: gankit run --resume {run_dir}" in text
    metrics, weights = (run_dir / "metrics.jsonl").read_bytes(), digests(run_dir / "checkpoints")

    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["total_steps"]) == ("completed", 6, 6)
    assert "d_loss" in summary["final"] and "trained nothing" in summary["message"]
    assert (run_dir / "progress.gif").is_file() and (run_dir / "curves.png").is_file()
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics  # nothing trained, nothing logged twice
    assert digests(run_dir / "checkpoints") == weights
    assert cli("report", run_dir, "-o", tmp_path / "after.html").exit_code == 0
    assert "finish it with" not in (tmp_path / "after.html").read_text()
    again = cli("run", "--resume", run_dir)
    assert again.exit_code == 2 and "already trained to step 6 of 6" in one_line(again.output)


def test_a_run_whose_disk_filled_writing_its_gif_is_finished_by_resume(write_recipe, tmp_path, monkeypatch):
    """The GIF, written after the last checkpoint, meets ENOSPC from the kernel (/dev/full)."""
    import gankit_plugins.gif as gif

    def onto_a_full_disk(path, data):
        with open("/dev/full", "wb") as full:
            full.write(data)
            full.flush()

    monkeypatch.setattr(gif, "write_bytes", onto_a_full_disk)
    runs = tmp_path / "runs"
    result = cli("run", write_recipe(train={"steps": 6, "checkpoint_every": 2}), "--runs-dir", runs)
    run_dir = runs / "00000-tiny"
    assert result.exit_code == 1 and "no space left on device" in one_line(result.output)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert checkpoints.last_good(RunDir(run_dir)) == checkpoint(run_dir, 6)
    monkeypatch.undo()  # space was freed
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps"]) == ("completed", 6)
    assert (run_dir / "progress.gif").is_file() and (run_dir / "metrics.jsonl").read_bytes() == metrics


def test_a_newest_checkpoint_without_meta_json_is_named_never_skipped(run_dir, tmp_path):
    missing = checkpoint(run_dir, 6) / "meta.json"
    missing.unlink()
    before = digests(run_dir)
    advice = f"{missing} cannot be loaded (error: missing); the newest earlier checkpoint that verifies and loads is"
    result = cli("sample", run_dir, "-n", "4", "-o", tmp_path / "grid.png")
    assert result.exit_code == 2 and advice in one_line(result.output)
    assert not (tmp_path / "grid.png").exists()
    result = cli("sample", run_dir, "-n", "4", "-o", tmp_path / "grid.png", "--checkpoint", "step_00000006")
    assert result.exit_code == 2 and str(missing) in one_line(result.output)  # not "no such checkpoint"
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) <= 3
    assert f"{advice} {checkpoint(run_dir, 4)}: delete {checkpoint(run_dir, 6)} to use it" in one_line(result.output)
    assert digests(run_dir) == before  # nothing deleted, nothing rewritten


def test_a_run_whose_every_checkpoint_lacks_meta_json_is_refused_and_left_as_it_was(run_dir):
    for step in (2, 4, 6):
        (checkpoint(run_dir, step) / "meta.json").unlink()
    before = digests(run_dir)
    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 2
    message = one_line(result.output)
    assert f"{checkpoint(run_dir, 6) / 'meta.json'} cannot be loaded (error: missing)" in message
    assert "none of the 2 earlier checkpoint(s) verifies and loads with this recipe.toml either " \
           "(step_00000002, step_00000004); nothing was deleted" in message
    assert digests(run_dir) == before  # metrics and checkpoints byte-identical: nothing restarted at step 0


class FakeTrainer:
    def save(self, directory: Path) -> None:
        (directory / "weights.bin").write_bytes(b"w" * 10)


def test_pruning_never_deletes_good_checkpoints_in_favour_of_a_damaged_one(tmp_path):
    run = RunDir.create(tmp_path, "x")
    for step in (2, 4, 6):
        checkpoints.save(run, FakeTrainer(), step, {"epoch": 0})
    (run.checkpoint(6) / "meta.json").unlink()
    checkpoints.save(run, FakeTrainer(), 8, {"epoch": 0}, keep=2)
    assert [p.name for p in run.list_checkpoints()] == ["step_00000004", "step_00000006", "step_00000008"]
    assert checkpoints.last_good(run) == run.checkpoint(8)


def test_every_checkpoint_records_the_recipe_digest(run_dir):
    recorded = [json.loads((p / "meta.json").read_text()).get("recipe_sha256") for p in RunDir(run_dir).list_checkpoints()]
    in_recipe = read_toml(run_dir / "recipe.toml")["gankit"]["recipe_sha256"]
    assert recorded == [in_recipe] * 3


def test_sample_and_evaluate_refuse_an_edited_recipe(run_dir, tmp_path):
    recipe = run_dir / "recipe.toml"
    recipe.write_text(recipe.read_text().replace("slope = 0.2", "slope = 0.3"))
    result = cli("sample", run_dir, "-n", "4", "-o", tmp_path / "grid.png")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) <= 3
    assert f"{recipe} was edited after the run started, or copied from another run: it is not the recipe that " \
           f"trained {checkpoint(run_dir, 6)}" in one_line(result.output)
    assert not (tmp_path / "grid.png").exists()
    result = cli("evaluate", run_dir, "-n", "8", "--metric", "fid")
    assert result.exit_code == 2 and f"{recipe} was edited after the run started" in one_line(result.output)
    assert not (run_dir / "eval.json").exists()


def without_hash_line(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("recipe_sha256"))


def test_an_edit_with_the_hash_line_deleted_is_still_caught(run_dir, tmp_path):
    recipe = run_dir / "recipe.toml"
    recipe.write_text(without_hash_line(recipe.read_text()).replace('g_activation = "leaky_relu"',
                                                                     'g_activation = "relu"'))
    before = digests(run_dir)
    for command in (["run", "--resume", run_dir, "--set", "train.steps=8"],
                    ["sample", run_dir, "-n", "4", "-o", tmp_path / "grid.png"]):
        result = cli(*command)
        assert result.exit_code == 2 and f"{recipe} was edited after the run started" in one_line(result.output)
    assert digests(run_dir) == before


def test_a_recipe_copied_from_a_sibling_run_is_refused(run_dir, tmp_path):
    sibling = tmp_path / "sibling"
    recipe = tmp_path / "sibling.toml"
    recipe.write_text((run_dir / "recipe.toml").read_text())
    result = cli("run", recipe, "--set", "train.steps=2", "--set", "train.lr_g=0.001", "--runs-dir", sibling)
    assert result.exit_code == 0, result.output
    shutil.copy(sibling / "00000-tiny" / "recipe.toml", run_dir / "recipe.toml")  # its own valid hash line
    before = digests(run_dir)
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 2
    assert f"copied from another run: it is not the recipe that trained {checkpoint(run_dir, 6)}" in one_line(
        result.output)
    assert digests(run_dir) == before


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_a_damaged_hash_line_alone_does_not_cost_the_run(run_dir, tmp_path, damage):
    recipe = run_dir / "recipe.toml"
    text = recipe.read_text()
    recipe.write_text(without_hash_line(text) if damage == "deleted" else
                      text.replace('recipe_sha256 = "', 'recipe_sha256 = "0bad'))
    result = cli("sample", run_dir, "-n", "4", "-o", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output
    original = tmp_path / "original.toml"
    original.write_text(text)
    digest = read_toml(recipe)["gankit"]["recipe_sha256"]
    assert digest == read_toml(original)["gankit"]["recipe_sha256"]  # repaired from the checkpoint's record
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 8


def refused_in_one_line(result, *expected: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for text in expected:
        assert text in one_line(result.output), result.output
    return result.output


@pytest.mark.parametrize("damage", ["truncated", "invalid", "steps=abc", "steps=5000 digits"])
def test_a_resume_with_a_bad_recipe_or_set_is_one_line(run_dir, damage):
    recipe = run_dir / "recipe.toml"
    overrides = []
    if damage == "truncated":
        recipe.write_bytes(recipe.read_bytes()[:len(recipe.read_bytes()) // 2])
    elif damage == "invalid":
        recipe.write_text(recipe.read_text().replace("seed = 0", "seed = [0"))
    elif damage == "steps=abc":
        overrides = ["--set", "train.steps=abc"]
    else:
        overrides = ["--set", "train.steps=" + "1" * 5000]
    before = digests(run_dir)
    output = refused_in_one_line(cli("run", "--resume", run_dir, *overrides))
    assert ("train.steps" if overrides else str(recipe)) in output.replace("\n", "")
    assert digests(run_dir) == before


def test_a_recipe_with_an_integer_of_5000_digits_is_one_line(write_recipe, tmp_path):
    recipe = write_recipe()
    recipe.write_text(recipe.read_text().replace("seed = 0", "seed = " + "9" * 5000))
    refused_in_one_line(cli("run", recipe, "--runs-dir", tmp_path / "runs"), "more than 4,300 digits")


@pytest.mark.parametrize("option", [["--seed", "-1"], ["-n", "0"]])
def test_sample_out_of_range_options_are_one_line(run_dir, tmp_path, option):
    refused_in_one_line(cli("sample", run_dir, *option, "-o", tmp_path / "grid.png"), f"{option[0]} {option[1]}:")


def test_a_world_size_that_is_not_a_number_is_one_line(write_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "abc")
    refused_in_one_line(cli("run", write_recipe(), "--runs-dir", tmp_path / "runs"), "WORLD_SIZE=abc")


def test_metrics_jsonl_replaced_by_a_folder_is_refused_before_training(run_dir):
    metrics = run_dir / "metrics.jsonl"
    kept = metrics.read_bytes()
    metrics.unlink()
    metrics.mkdir()
    (metrics / "kept").write_bytes(kept)
    before = digests(run_dir)
    refused_in_one_line(cli("run", "--resume", run_dir, "--set", "train.steps=8"), f"{metrics} is not a file")
    assert digests(run_dir) == before


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_runs_dir_that_is_a_broken_link_is_refused_before_the_data_loads(write_recipe, tmp_path, link):
    runs = tmp_path / "runs"
    runs.symlink_to(tmp_path / "nowhere" if link == "dangling" else runs)
    recipe = write_recipe(dataset={"root": str(tmp_path / "no-data")})  # loading it would fail otherwise
    refused_in_one_line(cli("run", recipe, "--runs-dir", runs), f"{runs} is a symbolic link to nothing")


def test_a_flipped_byte_in_one_metrics_line_is_reported_on_resume(run_dir):
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"', "\x00", 1)
    metrics.write_text("".join(lines))
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output
    assert f"{metrics}: dropped line(s) 2, which do not read as JSON" in one_line(result.output)


def test_a_report_of_runs_with_one_invalid_recipe_shows_the_others(run_dir, tmp_path):
    broken = run_dir.parent / "00001-broken"
    shutil.copytree(run_dir, broken)
    (broken / "recipe.toml").write_text("name = ")
    result = cli("report", run_dir.parent, "-o", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    assert "(1 run," in one_line(result.output) and f"left out of the report: {broken / 'recipe.toml'}" in one_line(
        result.output)


def test_resume_ignores_the_ray_address_of_the_environment(run_dir, monkeypatch):
    monkeypatch.setenv("GANKIT_RAY_ADDRESS", "auto")
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output
    result = cli("run", "--resume", run_dir, "--set", "train.steps=10", "--ray")
    refused_in_one_line(result, "leave out --jobs and --ray")


def test_a_read_only_runs_folder_is_one_line_for_resume_and_report(run_dir):
    from test_limits import small_filesystem

    gankit_command = f"{sys.executable} -m gankit"
    done = small_filesystem("4m", f'cp -r {run_dir} "$SMALL/run" && mount -o remount,ro "$SMALL" && '
                                  f'{gankit_command} run --resume "$SMALL/run" --set train.steps=8; echo "exit $?"; '
                                  f'{gankit_command} report "$SMALL/run" -o "$SMALL/report.html"; echo "exit $?"')
    output = done.stdout + done.stderr
    assert output.count("exit 2") == 2 and "Traceback" not in output, output
    assert "/run/.lock (Read-only file system)" in one_line(output), output
    assert "-o /" in output and "(Read-only file system); choose another -o" in one_line(output), output


def test_evaluate_that_cannot_save_eval_json_still_gives_the_scores(run_dir, tmp_path):
    pytest.importorskip("torch_fidelity")
    from gankit.eval_config import EvalConfig
    from gankit.plugins import load_registry
    from gankit.sampling import UnsavedScores, evaluate_run

    (run_dir / "eval.json").mkdir()  # in the way of the record, as a read-only disk would be
    with pytest.raises(UnsavedScores) as unsaved:
        evaluate_run(load_registry(), run_dir, EvalConfig(metrics=["fid"], n=64, features={"use": "domain", "steps": 20}),
                     cache_dir=tmp_path / "cache", info=lambda _: None, warn=lambda _: None)
    assert unsaved.value.record["scores"]["fid"] > 0
    assert str(unsaved.value) == (f"cannot write {run_dir / 'eval.json'} (Is a directory): the scores above were "
                                  "computed but not saved")


def test_a_disk_that_fills_during_torch_save_of_state_pt_is_one_line(write_recipe):
    """A real small tmpfs: the second checkpoint's weights fit, its optimizer state does not,
    and the space torch.save used is freed again before the error is looked at."""
    from test_limits import small_filesystem

    recipe = write_recipe(architecture={"g_hidden": [256], "d_hidden": [256]},
                          train={"steps": 10, "checkpoint_every": 5, "keep_checkpoints": 10}, export=[])
    done = small_filesystem("8m", f'{sys.executable} -m gankit run {recipe} --runs-dir "$SMALL/runs"; '
                                  'echo "exit $?"; ls "$SMALL/runs/00000-tiny/checkpoints"; '
                                  'ls -a "$SMALL/runs/00000-tiny/checkpoints"')
    output = done.stdout + done.stderr
    assert "exit 1" in output and "Traceback" not in output and "inline_container" not in output, output
    assert "no space left on device writing" in one_line(output) and "step_00000010; stopped at step 10" in one_line(
        output), output
    assert "the last good checkpoint is" in output and "step_00000005" in output and ".partial" not in output


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (exited, perhaps not yet reaped by its new parent)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_sigkill_of_a_jobs_2_parent_stops_its_workers_resumably(tmp_path, tiny_mnist):
    from test_parallel import lock_holder, logged

    runs = tmp_path / "runs"
    recipes = []
    for name in ("long1", "long2"):
        recipes.append(tmp_path / f"{name}.toml")
        recipes[-1].write_text(tomli_w.dumps(recipe_dict(
            tiny_mnist, name=name, backend={"use": "torch", "device": "cpu", "threads": 1},
            train={"steps": 100_000, "log_every": 1, "checkpoint_every": 100_000}, export=[])))
    process = gankit("run", *recipes, "--jobs", "2", "--runs-dir", runs)
    run_dirs = [runs / "00000-long1", runs / "00001-long2"]
    wait_for(lambda: all(logged(run_dir) >= 2 for run_dir in run_dirs), process)
    workers = [lock_holder(run_dir) for run_dir in run_dirs]
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=PATIENCE)  # the workers hold its output open until they end
    assert all(gone(pid) for pid in workers)
    assert "Traceback" not in output and "BrokenPipeError" not in output, output
    for run_dir in run_dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted", summary
        last = checkpoints.last_good(RunDir(run_dir))
        assert json.loads((last / "meta.json").read_text())["step"] == summary["steps"]
