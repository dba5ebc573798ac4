"""The fast-path options, each off by default: bf16 autocast and torch.compile on the
torch backend, XLA on TensorFlow. Each trains, and resumes exactly."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import PATIENCE, Trained
from gankit.plugins import load_registry

SMALL_DCGAN = {"use": "dcgan", "g_start_channels": 16,
               "g_layers": [{"filters": 8, "kernel": 5, "stride": 2}, {"kernel": 5, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 5, "stride": 2}, {"filters": 16, "kernel": 5, "stride": 2}],
               "d_dropout": 0.0}  # compiled code draws dropout masks with other random numbers


def losses(steps: list[dict[str, float]]) -> list[tuple[float, float]]:
    return [(step["d_loss"], step["g_loss"]) for step in steps]


@pytest.mark.parametrize("backend", [
    {"use": "torch", "precision": "bf16"},
    {"use": "torch", "compile": True},
    pytest.param({"use": "tensorflow", "jit_compile": True}, marks=pytest.mark.skipif(
        ("backend", "tensorflow") not in load_registry().components, reason="tensorflow backend not installed")),
], ids=["bf16", "compile", "xla"])
def test_a_fast_path_option_trains_and_resumes_exactly(write_recipe, tmp_path, backend):
    train = {"steps": 6, "batch_size": 32}
    # No threads setting: TensorFlow's cannot change once it has started in this process.
    recipe = write_recipe(architecture=SMALL_DCGAN, backend={**backend, "device": "cpu"}, train=train)
    plain = write_recipe("plain.toml", architecture=SMALL_DCGAN, backend={"use": backend["use"], "device": "cpu"},
                         train=train)
    straight = Trained(recipe).steps(0, 6)
    (tmp_path / "checkpoint").mkdir()
    resumed, _ = Trained.interrupted(recipe, 3, 6, tmp_path / "checkpoint")
    assert losses(resumed) == losses(straight)
    assert all(math.isfinite(value) for step in straight for value in step.values())
    assert straight[0]["d_loss"] != straight[-1]["d_loss"]  # it trains
    reference = losses(Trained(plain).steps(0, 6))
    if backend.get("precision") == "bf16":  # bfloat16 arithmetic: near float32, never equal
        assert losses(straight) != reference
        np.testing.assert_allclose(losses(straight), reference, rtol=0.05)
    else:  # the same arithmetic, compiled: equal up to the order of float operations
        np.testing.assert_allclose(losses(straight), reference, rtol=1e-4)


def test_compile_sets_up_in_a_fresh_process(write_recipe):
    """``import torch`` alone does not load torch.compile's settings module, which the
    backend changes: in a process of its own (not this test process, where other tests may
    have loaded it) the compiled trainer is built."""
    recipe = write_recipe(architecture=SMALL_DCGAN, backend={"use": "torch", "device": "cpu", "compile": True})
    code = ("import sys; from pathlib import Path; from gankit.data import DataSpec; "
            "from gankit.plugins import load_registry; from gankit.recipe import load_recipe; "
            "from gankit.runner import build_trainer; "
            "build_trainer(load_recipe(Path(sys.argv[1]), [], load_registry()), DataSpec(28, 28, 1)); print('built')")
    done = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, timeout=PATIENCE)
    assert done.returncode == 0 and done.stdout.strip() == "built", done.stderr[-2000:]
