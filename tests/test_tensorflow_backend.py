"""The TensorFlow backend: a real run switched over by one line, determinism, lossless
resume, checkpoints that refuse to load when damaged, and TensorFlow kept out of sight
until it is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec

import imageio.v3 as iio
import numpy as np
import pytest
import tomli_w
from conftest import Trained as Stepped
from conftest import recipe_dict
from click.testing import CliRunner

from gankit import console, hookimpl, nn
from gankit.backend import BackendError, CheckpointError
from gankit.cli import main
from gankit.data import DataSpec
from gankit.objectives import label_targets
from gankit.plugins import load_registry
from gankit.recipe import RecipeError, load_recipe, read_toml

pytestmark = pytest.mark.skipif(find_spec("tensorflow") is None, reason="tensorflow is not installed")

DCGAN_SMALL = {"use": "dcgan", "g_start_channels": 16, "d_batchnorm": True,
               "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
               "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}
TENSORFLOW = {"use": "tensorflow", "device": "cpu"}


def train(recipe, runs, *args):
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return sorted(runs.iterdir())[-1]


def metrics(run_dir, *, timings=False):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows if timings else [{k: v for k, v in row.items() if k != "images_per_sec"} for row in rows]



class Trained(Stepped):
    def state(self):
        """Every number the TensorFlow trainer holds: weights, statistics, optimizer slots, random state."""
        t = self.trainer
        variables = (t.generator.variables + t.discriminator.variables + t.optimizers["generator"].variables
                     + t.optimizers["discriminator"].variables)
        return [np.asarray(v) for v in variables] + [t.noise.state.numpy(), t.step.numpy(), t.fixed_noise.numpy()]

def test_one_line_switches_a_recipe_to_tensorflow(write_recipe, tmp_path):
    run_dir = train(write_recipe(architecture=DCGAN_SMALL), tmp_path / "runs", "--set", "backend.use=tensorflow")
    resolved = read_toml(run_dir / "recipe.toml")
    assert resolved["backend"] == {"use": "tensorflow", "device": "cpu", "threads": 0, "jit_compile": False}
    assert resolved["gankit"]["plugins"]["backend.tensorflow"] == "builtin"
    assert [m["step"] for m in metrics(run_dir)] == [2, 4, 6]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_sec"} <= set(metrics(run_dir, timings=True)[0])
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    grid = iio.imread(run_dir / "samples" / "step_00000006.png")
    assert grid.shape == (8 * 30 + 2, 8 * 30 + 2) and grid.std() > 0
    assert len(iio.imread(run_dir / "progress.gif", index=None)) == 2
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000004", "step_00000006"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["backend"] == "tensorflow"
    described = load_recipe(run_dir / "recipe.toml", [], load_registry()).architecture
    networks = described.component.factory(described.params, DataSpec(28, 28, 1))
    assert summary["parameters"] == {"generator": networks.generator.parameter_count(),
                                     "discriminator": networks.discriminator.parameter_count()}

    result = CliRunner().invoke(main, ["sample", str(run_dir), "-n", "10", "-o", str(tmp_path / "a.npz")])
    assert result.exit_code == 0, result.output
    images = np.load(tmp_path / "a.npz")["images"]
    assert images.shape == (10, 28, 28, 1) and images.dtype == np.uint8 and images.std() > 0


def test_same_recipe_and_seed_give_the_same_losses(write_recipe, tmp_path):
    recipe = write_recipe(architecture=DCGAN_SMALL, backend=TENSORFLOW, train={"label_noise": 0.05})
    first, second = train(recipe, tmp_path / "a"), train(recipe, tmp_path / "b")
    assert metrics(first) == metrics(second)
    other = train(write_recipe("other.toml", seed=1, architecture=DCGAN_SMALL, backend=TENSORFLOW), tmp_path / "c")
    assert metrics(other) != metrics(first)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_mnist):
    """Two steps on TensorFlow with no option set, logged at each step; shared by the option tests."""
    folder = tmp_path_factory.mktemp("baseline")
    recipe = folder / "tiny.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, backend=TENSORFLOW, train={"steps": 2, "log_every": 1})))
    return metrics(train(recipe, folder / "runs"))


# Each option against the baseline: what it must change, and what it must leave alone
# (D's loss at step 1 is computed before any update).
@pytest.mark.parametrize("train_options, check", [
    ({"loss": "minimax"}, lambda base, run: run[0]["d_loss"] == base[0]["d_loss"]
     and all(row["g_loss"] < 0 for row in run) and all(row["g_loss"] > 0 for row in base)),
    ({"update": "simultaneous"}, lambda base, run: run[0]["d_loss"] == base[0]["d_loss"]
     and run[0]["g_loss"] != base[0]["g_loss"]),
    ({"label_smoothing": 0.1}, lambda base, run: run[0]["d_loss"] != base[0]["d_loss"]
     and run[0]["d_real"] == base[0]["d_real"]),
    ({"optimizer": "rmsprop", "clip_value": 0.01}, lambda base, run: run[0]["d_loss"] == base[0]["d_loss"]
     and run[1]["d_loss"] != base[1]["d_loss"]),
])
def test_each_training_option_changes_what_it_should(write_recipe, tmp_path, baseline, train_options, check):
    run = metrics(train(write_recipe(backend=TENSORFLOW, train={"steps": 2, "log_every": 1, **train_options}),
                        tmp_path / "runs"))
    assert run[-1]["step"] == 2
    assert check(baseline, run), (baseline, run)


def test_optimizers_and_targets_follow_the_train_table(write_recipe):
    trainer = Trained(write_recipe(backend=TENSORFLOW, train={"label_smoothing": 0.1, "label_noise": 0.05})).trainer
    opt_d = trainer.optimizers["discriminator"]
    assert (opt_d.beta_1, opt_d.beta_2, opt_d.epsilon) == (0.5, 0.999, 1e-8)
    assert opt_d.clipvalue is None
    logits = np.zeros((1000, 1), np.float32)
    real, fake = (t.numpy() for t in label_targets(trainer, logits, logits, trainer.train.label_smoothing,
                                                    trainer.train.label_noise))
    assert real.shape == (1000, 1) and 0.85 <= real.min() < real.max() <= 0.9
    assert 0.0 <= fake.min() < fake.max() <= 0.05

    options = {"optimizer": "rmsprop", "clip_value": 0.5}
    rmsprop = Trained(write_recipe("r.toml", backend=TENSORFLOW, train=options)).trainer
    opt_g = rmsprop.optimizers["generator"]
    assert (opt_g.rho, opt_g.epsilon, opt_g.clipvalue) == (0.9, 1e-7, 0.5)


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(write_recipe, tmp_path, update):
    """Dropout, BatchNorm, label noise and two D steps: every piece of random state must come back."""
    recipe = write_recipe(architecture=DCGAN_SMALL, backend=TENSORFLOW,
                          train={"update": update, "d_steps": 2, "label_noise": 0.1, "batch_size": 16})
    straight = Trained(recipe)
    losses = straight.steps(0, 6)
    resumed_losses, resumed = Trained.interrupted(recipe, 3, 6, tmp_path)
    assert resumed_losses == losses
    assert all(np.array_equal(a, b) for a, b in zip(straight.state(), resumed.state(), strict=True))
    assert np.array_equal(straight.trainer.fixed_samples(), resumed.trainer.fixed_samples())


def test_generator_only_load_restores_just_the_generator(write_recipe, tmp_path):
    recipe = write_recipe(architecture=DCGAN_SMALL, backend=TENSORFLOW)
    trained = Trained(recipe)
    trained.steps(0, 2)
    trained.trainer.save(tmp_path)
    fresh = Trained(recipe).trainer
    untouched = [np.asarray(v) for v in fresh.discriminator.variables]
    fresh.load(tmp_path, generator_only=True)
    assert np.array_equal(fresh.fixed_samples(), trained.trainer.fixed_samples())
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(untouched, fresh.discriminator.variables))
    assert int(fresh.step.numpy()) == 0 and int(fresh.optimizers["generator"].iterations.numpy()) == 0
    np.testing.assert_array_equal(fresh.generate(5, seed=3), trained.trainer.generate(5, seed=3))


def test_the_checkpoint_holds_models_optimizers_step_and_random_state(write_recipe, tmp_path):
    import tensorflow as tf

    trained = Trained(write_recipe(architecture=DCGAN_SMALL, backend=TENSORFLOW))
    trained.steps(0, 1)
    trained.trainer.save(tmp_path)
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoint"))
    names = set(reader.get_variable_to_shape_map())
    for prefix in ("step/", "fixed_noise/", "noise/", "d_dropout/0/", "d_dropout/1/", "opt_g/_iterations/",
                   "opt_d/_iterations/", "generator/", "discriminator/"):
        assert any(name.startswith(prefix) for name in names), prefix
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 1


def test_a_damaged_checkpoint_raises_checkpoint_error(write_recipe, tmp_path):
    recipe = write_recipe(architecture=DCGAN_SMALL, backend=TENSORFLOW)
    trainer = Trained(recipe).trainer
    saved = tmp_path / "saved"
    saved.mkdir()
    trainer.save(saved)
    (data,) = saved.glob("checkpoint.data-*")

    with pytest.raises(CheckpointError, match="checkpoint.index"):
        trainer.load(tmp_path / "missing")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="checkpoint.data"):
        trainer.load(saved)
    (saved / "checkpoint.index").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="checkpoint.index"):
        trainer.load(saved, generator_only=True)

    other = tmp_path / "other"
    other.mkdir()
    wider = {**DCGAN_SMALL, "g_start_channels": 32}
    Trained(write_recipe("wide.toml", architecture=wider, backend=TENSORFLOW)).trainer.save(other)
    with pytest.raises(CheckpointError):
        trainer.load(other)


class TorchOnlyArchitecture:
    """A third-party architecture that gives only a native PyTorch builder."""

    @hookimpl
    def register_architectures(self, register):
        register("torchonly", lambda params, spec: nn.Architecture(100, None, None, native={"torch": None}),
                 backends=("torch",), description="native PyTorch only")


def test_an_architecture_without_tensorflow_support_is_refused_by_name(write_recipe, capsys):
    registry = load_registry([("torchonly", TorchOnlyArchitecture(), "torch-only 1.0")])
    with pytest.raises(RecipeError, match="backend.use: architecture 'torchonly' gives networks for the torch "
                                          "backend.s. only, not 'tensorflow'; set backend.use = 'torch'"):
        load_recipe(write_recipe(architecture={"use": "torchonly"}, backend=TENSORFLOW), [], registry)
    console.plugins_json(registry, "architecture")
    (listed,) = [row for row in json.loads(capsys.readouterr().out)["plugins"] if row["name"] == "torchonly"]
    assert listed["backends"] == ["torch"]


def test_devices(write_recipe):
    from gankit_plugins.tensorflow_backend import TensorflowParams
    from gankit_plugins.tensorflow_backend.trainer import resolve_device

    for good in ("auto", "cpu", "gpu", "gpu:1", "cuda:0"):
        TensorflowParams(device=good)
    with pytest.raises(ValueError, match="gpu:N"):
        TensorflowParams(device="mps")
    assert resolve_device(TensorflowParams(device="cpu")) == "/CPU:0"
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        assert resolve_device(TensorflowParams()) == "/CPU:0"
        with pytest.raises(BackendError, match='device = "auto" or "cpu"'):
            resolve_device(TensorflowParams(device="gpu:0"))


def test_tensorflow_is_imported_only_when_used_and_quietly():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("GANKIT_TF_VERBOSE", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    listing = ("import sys; from gankit.plugins import load_registry; load_registry().get('backend', 'tensorflow'); "
               "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", listing], check=True, env=env)
    using = ("from gankit_plugins.tensorflow_backend import import_tensorflow; tf = import_tensorflow(); "
             "print(float(tf.reduce_sum(tf.ones([3]))))")
    done = subprocess.run([sys.executable, "-c", using], check=True, env=env, capture_output=True, text=True)
    assert done.stdout == "3.0\n" and done.stderr == ""
