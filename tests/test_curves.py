"""curves.png: in every run without asking, refreshed as the run goes on."""

from __future__ import annotations

import imageio.v3 as iio
from click.testing import CliRunner

from gankit.cli import main
from gankit.curves import draw_curves, read_metrics


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_run_draws_curves_and_redraws_them_after_more_training(write_recipe, tmp_path):
    recipe = write_recipe(export=[], train={"steps": 6, "log_every": 2, "checkpoint_every": 4})
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    run_dir = next((tmp_path / "runs").iterdir())
    first = (run_dir / "curves.png").read_bytes()
    height, width, _ = iio.imread(first).shape
    assert width == 800 and height > 200

    result = cli("run", "--resume", run_dir, "--set", "train.steps=10")
    assert result.exit_code == 0, result.output
    assert (run_dir / "curves.png").read_bytes() != first
    assert not list(run_dir.glob(".curves.png*")), "written atomically: no temporary file is left"


def test_metrics_read_back_by_step_with_a_relogged_step_keeping_its_later_value(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "epoch": 0, "d_loss": 1.0, "images_per_sec": 9.0}\n'
                    '{"step": 4, "epoch": 0, "d_loss": 0.8}\n'
                    '{"step": 4, "epoch": 0, "fid": 30.0, "fid_std": 1.0}\n'
                    '{"step": 4, "epoch": 0, "d_loss": 0.7}\n'
                    '{"step": 6, "ep')
    assert read_metrics(path) == {"d_loss": {2: 1.0, 4: 0.7}, "fid": {4: 30.0}, "fid_std": {4: 1.0}}


def test_scores_get_panels_of_their_own():
    losses_only = iio.imread(draw_curves({"d_loss": {1: 1.0}, "d_real": {1: 0.5}}, "t"))
    with_scores = iio.imread(draw_curves({"d_loss": {1: 1.0}, "d_real": {1: 0.5}, "fid": {1: 9.0}, "kid": {1: 0.1}}, "t"))
    assert with_scores.shape[0] > losses_only.shape[0]
    assert iio.imread(draw_curves({}, "nothing logged yet")).shape[1] == 800
