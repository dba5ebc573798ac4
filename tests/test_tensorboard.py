"""The tensorboard exporter, read back with TensorBoard's own event reader."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from gankit.cli import main

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_events(run_dir):
    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_images_and_hparams_once_per_step_also_after_a_resume(write_recipe, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    recipe = write_recipe(sweep={"train.lr_g": [1e-4]},
                          train={"steps": 6, "log_every": 2, "checkpoint_every": 4, "keep_checkpoints": 3})
    runs = tmp_path / "runs"
    result = cli("run", recipe, "--runs-dir", runs, "--set", "export.tensorboard={}")
    assert result.exit_code == 0, result.output
    run_dir = next(runs.iterdir())

    # As if the process had died after logging step 6 but before its checkpoint was saved.
    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output

    events = read_events(run_dir)
    tags = events.Tags()
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/images_per_sec"} <= set(tags["scalars"])
    for tag in tags["scalars"]:
        assert [e.step for e in events.Scalars(tag)] == [2, 4, 6, 8], tag
    assert [e.step for e in events.Images("samples")] == [3, 6, 8]
    assert events.Images("samples")[-1].width > 28
    last_logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert events.Scalars("train/g_loss")[-1].value == pytest.approx(last_logged["g_loss"])

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.lr_g"].number_value == pytest.approx(1e-4)


def test_evaluation_scores_and_colour_grids(tmp_path):
    """Fed events directly: a run with [eval] trains a feature extractor, too slow to test here."""
    import numpy as np

    from gankit.events import EvalLogged, RunFinished, RunStarted, SamplesReady, StepLogged
    from gankit_plugins.tensorboard import TensorBoardExporter, TensorBoardParams

    (tmp_path / "recipe.toml").write_text('name = "x"\n')
    exporter = TensorBoardExporter(TensorBoardParams(), tmp_path)
    exporter.handle(RunStarted(tmp_path, 0, 10, 5, 4))
    exporter.handle(StepLogged(10, 1, {"d_loss": 0.5}))
    exporter.handle(EvalLogged(10, 1, {"fid": 12.5, "kid": 0.01, "kid_std": 0.002}))
    exporter.handle(SamplesReady(10, np.full((4, 8, 8, 3), 200, np.uint8)))
    exporter.handle(RunFinished(10, "completed"))

    events = read_events(tmp_path)
    assert {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]} == {
        "train/d_loss": [(10, 0.5)], "eval/fid": [(10, 12.5)], "eval/kid": [(10, pytest.approx(0.01))],
        "eval/kid_std": [(10, pytest.approx(0.002))]}
    image = events.Images("samples")[0]
    assert (image.width, image.height) == (2 + 2 * 10, 2 + 2 * 10)
    with pytest.raises(KeyError):  # not a sweep: no hparams
        events.PluginTagToContent("hparams")


def test_without_tensorboardx_the_run_does_not_start_and_says_what_to_install(write_recipe, tmp_path, monkeypatch):
    import gankit.registry

    installed = gankit.registry._installed
    monkeypatch.setattr(gankit.registry, "_installed", lambda module: module != "tensorboardX" and installed(module))
    result = cli("run", write_recipe(export=[{"use": "tensorboard"}]), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")
    assert "exporter 'tensorboard' (builtin) needs the module 'tensorboardX'" in result.output
    assert "pip install 'gankit[tensorboard]'" in result.output
    assert not (tmp_path / "runs").exists()
