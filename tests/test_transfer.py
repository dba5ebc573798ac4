"""Training on from another run (``train.init_from``) and FreezeD (``train.freeze_d``): the
new run starts from exactly the source's networks with fresh optimizers, a source that
does not fit is refused in one line, and frozen layers do not move."""

from __future__ import annotations

import json
import re
import shutil
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gankit import nn
from gankit.cli import main
from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe, read_toml
from gankit.report import write_report
from gankit.rundir import RunDir
from gankit.runner import prepare, resume, run
from gankit.train_config import TrainConfig
from gankit.nn import frozen_layers, weight_layers
from gankit.transfer import Source, check_freeze

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
            for name in ("torch", "tensorflow")]
TINY_DCGAN = {"use": "dcgan", "g_start_channels": 16,
              "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
              "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}
"""D: Conv 8, Conv 16, Dense 1 (with LeakyReLU and Dropout between): three weight layers."""
NETWORKS = ("generator", "discriminator", "generator_ema")
CONTEXT = DataContext(warn=lambda message: None)


def tiny(backend: str = "torch", architecture: dict | None = None, **train) -> dict:
    return {"architecture": architecture or TINY_DCGAN, "backend": {"use": backend, "device": "cpu"},
            "train": {"steps": 4, "batch_size": 32, **train}, "export": []}


def load(path: Path):
    return load_recipe(path, [], load_registry())


def checkpoint_tensors(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor a checkpoint holds, by name: the networks' as ``generator/...``,
    ``discriminator/...`` and ``generator_ema/...``; the optimizers', random state's and
    step's under other names."""
    if (directory / "state.pt").is_file():
        import torch
        from safetensors.numpy import load_file

        found = {f"{path.stem}/{key}": value for path in directory.glob("*.safetensors")
                 for key, value in load_file(path).items()}

        def flat(prefix: str, value) -> None:
            if isinstance(value, (dict, list, tuple)):
                for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
                    flat(f"{prefix}/{key}", item)
            else:
                found[prefix] = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)

        flat("state", torch.load(directory / "state.pt", weights_only=True))
        return found
    import tensorflow as tf
    from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph

    # TensorFlow files a tensor under the first path that reaches it (an optimizer's list
    # of weights, say): name each by its path in the object graph, the networks' first.
    reader = tf.train.load_checkpoint(str(directory / "checkpoint"))
    graph = TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    found, seen = {}, set()

    def visit(node_id: int, path: str) -> None:
        if node_id not in seen:
            seen.add(node_id)
            for attribute in graph.nodes[node_id].attributes:
                found[f"{path}/{attribute.name}"] = reader.get_tensor(attribute.checkpoint_key)
            for child in graph.nodes[node_id].children:
                visit(child.node_id, f"{path}/{child.local_name}")

    for child in sorted(graph.nodes[0].children, key=lambda child: child.local_name not in NETWORKS):
        visit(child.node_id, child.local_name)
    return found


def saved(trainer, directory: Path) -> dict[str, np.ndarray]:
    directory.mkdir()
    trainer.save(directory)
    return checkpoint_tensors(directory)


def is_network(key: str) -> bool:
    return key.split("/")[0] in NETWORKS


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_run_starts_from_the_source_networks_with_fresh_optimizers(backend, write_recipe, tmp_path):
    source = run(load(write_recipe("source.toml", **tiny(backend, ema=0.9))), runs_root=tmp_path / "source",
                 context=CONTEXT)
    checkpoint = RunDir(source.run_dir).checkpoint(4)
    started = prepare(load(write_recipe("new.toml", **tiny(backend, ema=0.9, freeze_d=1,
                                                           init_from=str(source.run_dir)))), CONTEXT)
    scratch = prepare(load(write_recipe("scratch.toml", **tiny(backend, ema=0.9, freeze_d=1))), CONTEXT)
    there = checkpoint_tensors(checkpoint)
    loaded, fresh = saved(started.trainer, tmp_path / "loaded"), saved(scratch.trainer, tmp_path / "fresh")

    assert started.source == Source(checkpoint.resolve(), 4)
    assert loaded.keys() == fresh.keys() and {key.split("/")[0] for key in loaded if is_network(key)} == set(NETWORKS)
    for key, value in loaded.items():  # the networks are the source's; optimizers, random state, step a new run's
        np.testing.assert_array_equal(value, there[key] if is_network(key) else fresh[key], err_msg=key)
    assert [key for key in loaded if is_network(key) and not np.array_equal(fresh[key], there[key])]


def test_an_ema_generator_starts_from_the_generator_of_a_source_without_one(write_recipe, tmp_path):
    source = run(load(write_recipe("source.toml", **tiny())), runs_root=tmp_path / "source", context=CONTEXT)
    started = prepare(load(write_recipe("new.toml", **tiny(ema=0.9, init_from=str(source.run_dir)))), CONTEXT)
    there, loaded = checkpoint_tensors(RunDir(source.run_dir).checkpoint(4)), saved(started.trainer, tmp_path / "new")
    averaged = [key for key in loaded if key.startswith("generator_ema/")]
    assert averaged
    for key in averaged:
        np.testing.assert_array_equal(loaded[key], there[key.replace("generator_ema/", "generator/", 1)])


def test_a_run_records_its_source_trains_from_step_0_and_the_report_shows_it(write_recipe, tmp_path):
    source = run(load(write_recipe("source.toml", **tiny())), runs_root=tmp_path / "source", context=CONTEXT)
    checkpoint = RunDir(source.run_dir).checkpoint(4)
    path = write_recipe("new.toml", **tiny(steps=3, init_from=str(checkpoint)))
    result = CliRunner().invoke(main, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (new,) = RunDir.numbered(tmp_path / "runs")
    summary = json.loads(new.summary.read_text())
    assert summary["init_from"] == {"checkpoint": str(checkpoint.resolve()), "step": 4}
    assert (summary["status"], summary["steps"]) == ("completed", 3)
    assert read_toml(new.recipe)["gankit"]["init_from"] == summary["init_from"]
    page = (tmp_path / "report.html")
    write_report([new.path], page)
    assert f"started from {checkpoint.resolve()} (step 4)" in page.read_text()


def test_a_resume_continues_from_its_own_checkpoint_and_one_before_any_from_the_source(write_recipe, tmp_path):
    source = run(load(write_recipe("source.toml", **tiny())), runs_root=tmp_path / "source", context=CONTEXT)
    calls = iter(range(100))
    stopped = run(load(write_recipe("new.toml", **tiny(steps=6, init_from=str(source.run_dir)))),
                  runs_root=tmp_path / "runs", context=CONTEXT, should_stop=lambda: next(calls) == 2)
    assert (stopped.finished.status, stopped.finished.step) == ("interrupted", 2)
    recorded = {"checkpoint": str(RunDir(source.run_dir).checkpoint(4).resolve()), "step": 4}

    moved = shutil.move(source.run_dir, tmp_path / "gone")  # not needed: the run goes on from its own checkpoint
    resumed = resume(stopped.run_dir, load_registry(), context=CONTEXT)
    assert (resumed.finished.status, resumed.finished.step) == ("completed", 6)
    assert json.loads(RunDir(stopped.run_dir).summary.read_text())["init_from"] == recorded

    shutil.rmtree(RunDir(stopped.run_dir).checkpoints)  # before its first checkpoint: from the source again
    result = CliRunner().invoke(main, ["run", "--resume", str(stopped.run_dir)])
    assert result.exit_code == 2 and "train.init_from:" in result.output, result.output
    shutil.move(moved, source.run_dir)
    resumed = resume(stopped.run_dir, load_registry(), context=CONTEXT)
    assert (resumed.finished.status, resumed.finished.step) == ("completed", 6)
    assert json.loads(RunDir(stopped.run_dir).summary.read_text())["init_from"] == recorded


@pytest.mark.parametrize("backend, there, here", [
    pytest.param(*BACKENDS[0].values, (8, 1, 3, 3), (4, 1, 3, 3), marks=BACKENDS[0].marks),
    pytest.param(*BACKENDS[1].values, (3, 3, 1, 8), (3, 3, 1, 4), marks=BACKENDS[1].marks),
])
def test_a_source_of_another_shape_is_refused_in_one_line_naming_the_tensor(backend, there, here, write_recipe,
                                                                             tmp_path):
    source = run(load(write_recipe("source.toml", **tiny(backend))), runs_root=tmp_path / "source", context=CONTEXT)
    narrower = {**TINY_DCGAN, "d_layers": [{"filters": 4, "kernel": 3, "stride": 2}, *TINY_DCGAN["d_layers"][1:]]}
    path = write_recipe("new.toml", **tiny(backend, narrower, init_from=str(source.run_dir)))
    result = CliRunner().invoke(main, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    expected = (rf"train.init_from: {RunDir(source.run_dir).checkpoint(4).resolve()}: discriminator tensor '[^']+' is "
                rf"{re.escape(str(there))} there and {re.escape(str(here))} here; use a run of the same architecture")
    assert re.search(expected, " ".join(result.output.split())), result.output
    assert not (tmp_path / "runs").exists()


def bad_sources(tmp_path: Path, source: Path) -> dict[str, tuple[dict, str]]:
    """Recipe [train] tables that cannot start, and what their one-line error says."""
    unborn = tmp_path / "unborn"
    unborn.mkdir()
    (unborn / "recipe.toml").write_text((source / "recipe.toml").read_text())
    damaged = tmp_path / "damaged"
    shutil.copytree(source, damaged)
    (RunDir(damaged).checkpoint(4) / "discriminator.safetensors").write_bytes(b"not weights")
    return {
        "nothing there": ({"init_from": str(tmp_path / "nowhere")}, "neither a run directory"),
        "no checkpoint": ({"init_from": str(unborn)}, "the run has no checkpoint yet"),
        "damaged": ({"init_from": str(damaged)}, "discriminator.safetensors cannot be loaded"),
        "another backend": ({"init_from": str(source)}, "was trained on the torch backend"),
        "too deep a freeze": ({"freeze_d": 4}, "train.freeze_d: 4 is more than the 3 weight layers"),
    }


@pytest.mark.parametrize("case", ["nothing there", "no checkpoint", "damaged", "another backend", "too deep a freeze"])
def test_bad_init_from_and_freeze_d_are_one_line_errors_before_anything_is_written(case, write_recipe, tmp_path):
    source = run(load(write_recipe("source.toml", **tiny())), runs_root=tmp_path / "source", context=CONTEXT)
    train, expected = bad_sources(tmp_path, source.run_dir)[case]
    backend = "tensorflow" if case == "another backend" else "torch"
    if backend == "tensorflow" and find_spec("tensorflow") is None:
        pytest.skip("needs tensorflow")
    path = write_recipe("new.toml", **tiny(backend, **train))
    result = CliRunner().invoke(main, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists(), result.output


def test_freeze_d_counts_weight_layers_in_order_and_needs_a_description():
    residual = nn.Network((8, 8, 1), (nn.Conv(4, 3), nn.BatchNorm(), nn.Residual((nn.ReLU(), nn.Conv(4, 3)),
                                                                                 (nn.Conv(4, 1),)),
                                      nn.Flatten(), nn.Dense(1)))
    assert weight_layers(residual) == [0, 4, 5, 7]
    assert frozen_layers(residual, 2) == {0, 4} and frozen_layers(residual, 0) == frozenset()
    native = nn.Architecture(8, None, None, native={"torch": lambda: None})
    with pytest.raises(ValueError, match="train.freeze_d: the architecture builds its networks natively"):
        check_freeze(TrainConfig(steps=1, freeze_d=1), native, "torch")


def discriminator_weights(backend: str, trainer) -> list[list[np.ndarray]]:
    """The weights (kernel, bias) of each of D's weight layers, in order."""
    if backend == "torch":
        from gankit_plugins.torch_backend.compile import placed_modules

        modules = placed_modules(trainer.discriminator)
        return [[p.detach().cpu().numpy().copy() for p in modules[index].parameters()]
                for index in weight_layers(trainer.description.discriminator)]
    from gankit_plugins.tensorflow_backend.compile import keras

    layers = [layer for layer in trainer.discriminator.layers if not isinstance(layer, keras.layers.InputLayer)]
    return [[v.numpy().copy() for v in layers[index].weights]
            for index in weight_layers(trainer.description.discriminator)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("freeze", [0, 2])
def test_frozen_layers_stay_bit_identical_while_the_others_train(backend, freeze, write_recipe, tmp_path):
    from conftest import Trained

    trained = Trained(write_recipe(**tiny(backend, TINY_DCGAN, freeze_d=freeze, ema=0.9)))
    before = discriminator_weights(backend, trained.trainer)
    trained.steps(0, 3)
    after = discriminator_weights(backend, trained.trainer)
    moved = [not all(np.array_equal(a, b) for a, b in zip(first, then)) for first, then in zip(before, after)]
    assert moved == [index >= freeze for index in range(3)]


def test_a_frozen_run_resumes_exactly(write_recipe, tmp_path):
    from conftest import Trained

    path = write_recipe(**tiny(freeze_d=2))
    straight = Trained(path).steps(0, 4)
    interrupted, _ = Trained.interrupted(path, 2, 4, tmp_path)
    assert straight == interrupted
