"""The torch backend's thread count: free cores counted from /proc/stat, the count chosen
from them, and that count kept through a resume."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from gankit.cli import main
from gankit_plugins.torch_backend import threads, trainer


@pytest.mark.parametrize(("default", "logical", "free", "chosen"), [
    (2, 2, 2.0, 2), (2, 2, 1.9, 2), (2, 2, 1.0, 1), (2, 2, 1.7, 1), (2, 2, 0.0, 1),
    (8, 16, 16.0, 8), (8, 16, 8.0, 4), (8, 16, None, 8),
])
def test_auto_threads_leaves_out_the_cores_others_use(default, logical, free, chosen):
    assert threads.auto_threads(default, logical, free) == chosen


class ChangingStat:
    """A /proc/stat read twice: CPU 0 fully busy in between, CPU 1 idle."""

    def __init__(self):
        self.reads = iter([
            "cpu  300 0 0 300 0 0 0 0 0 0\ncpu0 100 0 50 50 0 0 0 0 0 0\ncpu1 150 0 0 250 0 0 0 0 0 0\nintr 5\n",
            "cpu  320 0 0 320 0 0 0 0 0 0\ncpu0 110 0 60 50 0 0 0 0 0 0\ncpu1 150 0 0 270 0 0 0 0 0 0\nintr 9\n",
        ])

    def read_text(self):
        return next(self.reads)


def test_free_cpus_counts_what_other_processes_left_idle(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert threads.cpu_jiffies(ChangingStat()) == {0: (150, 200), 1: (150, 400)}
    assert threads.free_cpus(0.01, ChangingStat()) == pytest.approx(1.0, abs=0.05)


def test_free_cpus_is_none_without_proc_stat(tmp_path):
    assert threads.free_cpus(0.01, tmp_path / "missing") is None


def test_the_thread_count_a_run_started_with_is_kept_on_resume(write_recipe, tmp_path, monkeypatch):
    before = torch.get_num_threads()
    runs = tmp_path / "runs"
    recipe = write_recipe(backend={"use": "torch", "device": "cpu", "threads": "auto"}, train={"steps": 4})
    try:
        monkeypatch.setattr(trainer, "choose_threads", lambda default: 1)
        result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        (run_dir,) = runs.iterdir()
        state = torch.load(run_dir / "checkpoints" / "step_00000004" / "state.pt", weights_only=True)
        assert state["threads"] == 1
        monkeypatch.setattr(trainer, "choose_threads", lambda default: 2)
        result = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--set", "train.steps=8"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
