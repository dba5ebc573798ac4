"""Recipe errors: one line naming the file and key, exit code 2, no traceback, no run directory."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gankit.cli import main


def run_cli(*args, cwd=None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_clean_error(result, *fragments, runs_dir=None):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    message = lines[0]
    assert "Traceback" not in result.output
    assert message.startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in message, message
    if runs_dir is not None:
        assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.parametrize(
    "sections, fragments",
    [
        ({"architecture": {"use": "mlp", "g_hiden": [8]}}, ["architecture.g_hiden", "unknown key", "did you mean 'g_hidden'"]),
        ({"train": {"steps": "many"}}, ["train.steps", "valid integer", "'many'"]),
        ({"train": {"steps": 6, "lr_g": 5.0}}, ["train.lr_g", "less than or equal to 1"]),
        ({"train": {"steps": 6, "batch_size": 0}}, ["train.batch_size", "greater than or equal to 1"]),
        ({"architecture": {"use": "dcgna"}}, ["architecture.use", "unknown architecture 'dcgna'", "did you mean 'dcgan'"]),
        ({"backend": {"use": "torch", "device": "gpu7"}}, ["backend.device", "auto, cpu, cuda"]),
        ({"export": [{"use": "png", "every": "sometimes"}]}, ["export.0.every", "1 epoch"]),
        ({"trian": {"steps": 1}}, ["trian", "did you mean 'train'"]),
        ({"train": {"batch_size": 8}}, ["train", "give train.epochs or train.steps"]),
    ],
)
def test_bad_recipe_is_one_line_error(write_recipe, tmp_path, sections, fragments):
    path = write_recipe(**sections)
    if "train" in sections and "steps" not in sections["train"] and "epochs" not in sections["train"]:
        text = path.read_text().replace("steps = 6\n", "")
        path.write_text(text)
    runs = tmp_path / "runs"
    result = run_cli("run", str(path), "--runs-dir", str(runs))
    assert_clean_error(result, str(path), *fragments, runs_dir=runs)


def test_missing_recipe_file(tmp_path):
    result = run_cli("run", str(tmp_path / "nope.toml"), "--runs-dir", str(tmp_path / "runs"))
    assert_clean_error(result, "nope.toml", "no such recipe file", runs_dir=tmp_path / "runs")


def test_unparsable_recipe_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nsteps = 1\n")
    result = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert_clean_error(result, "broken.toml", "not valid TOML", runs_dir=tmp_path / "runs")


def test_missing_section(write_recipe, tmp_path):
    path = write_recipe()
    path.write_text(path.read_text().replace('[backend]\nuse = "torch"\ndevice = "cpu"\n', ""))
    result = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert_clean_error(result, "[backend]", "missing")


def test_bad_set_override(write_recipe, tmp_path):
    result = run_cli("run", str(write_recipe()), "--set", "train.steps", "--runs-dir", str(tmp_path / "runs"))
    assert_clean_error(result, "expected KEY=VALUE")
    result = run_cli("run", str(write_recipe()), "--set", "train.steps=-3", "--runs-dir", str(tmp_path / "runs"))
    assert_clean_error(result, "train.steps", "greater than or equal to 1", runs_dir=tmp_path / "runs")


def test_set_overrides_and_dry_run_prints_resolved_recipe(write_recipe, tmp_path):
    runs = tmp_path / "runs"
    result = run_cli("run", str(write_recipe()), "--set", "train.steps=3", "--set", "export.0.every=2",
                     "--set", "architecture.g_hidden=[16, 16]", "--dry-run", "--runs-dir", str(runs))
    assert result.exit_code == 0, result.output
    assert "steps = 3" in result.output
    assert "every = 2" in result.output
    assert "16," in result.output
    assert 'g_norm_order = "norm_act"' in result.output  # a default filled in
    assert not runs.exists()


def test_data_problem_is_one_line_error_before_any_run_directory(write_recipe, tmp_path):
    path = write_recipe(dataset={"use": "mnist", "root": str(tmp_path / "nowhere"), "download": False})
    runs = tmp_path / "runs"
    result = run_cli("run", str(path), "--runs-dir", str(runs))
    assert_clean_error(result, "dataset", "nowhere", runs_dir=runs)


def test_architecture_that_does_not_fit_the_data(write_recipe, tmp_path):
    path = write_recipe(architecture={"use": "dcgan", "g_layers": [{"filters": 8, "stride": 3}, {"stride": 1}]})
    runs = tmp_path / "runs"
    result = run_cli("run", str(path), "--runs-dir", str(runs))
    assert_clean_error(result, "architecture", "does not divide", runs_dir=runs)


def test_batch_larger_than_data(write_recipe, tmp_path):
    path = write_recipe(train={"steps": 2, "batch_size": 1000})
    runs = tmp_path / "runs"
    result = run_cli("run", str(path), "--runs-dir", str(runs))
    assert_clean_error(result, "train", "lower train.batch_size", runs_dir=runs)
