"""Conformance checks for plugin authors: call them from your own pytest.

Each check finds your component among the installed plugins by name (install your
package first, e.g. ``pip install -e .``), runs it the way gankit does and raises
``AssertionError`` saying what is wrong. The bundled plugins pass the same checks
(``tests/test_conformance.py``). Everything runs on the CPU on tiny data, in seconds.

- ``check_architecture``: it builds, its shapes fit the data, and it trains a few steps
  on every installed backend it supports, with the same parameter counts on each.
- ``check_dataset``: ``load(split)`` returns what ``register_datasets`` promises.
- ``check_exporter``: it survives a real run and a resume of it (``gankit run``).
- ``check_backend``: the same seed gives the same losses; a resume is lossless; a
  generator-only load draws the same samples; a damaged or mismatched checkpoint is a
  ``CheckpointError``.
"""

from __future__ import annotations

import gzip
import math
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gankit import nn
from gankit.backend import CheckpointError
from gankit.data import DataContext, DataSpec, ImageData
from gankit.params import validate_params
from gankit.plugins import load_registry
from gankit.registry import Component, Registry
from gankit.train_config import TrainConfig

__all__ = ["check_architecture", "check_dataset", "check_exporter", "check_backend", "installed_backends",
           "noise_images", "mnist_folder"]


def installed_backends(registry: Registry | None = None) -> list[str]:
    """The backends whose required modules are all installed."""
    registry = registry or load_registry()
    return [c.name for c in registry.of_kind("backend") if not c.missing_requirements()]


def noise_images(spec: DataSpec, count: int = 32, seed: int = 0) -> np.ndarray:
    """``count`` uint8 images of ``spec``'s shape, uniform noise: enough to train a few steps."""
    return np.random.default_rng(seed).integers(0, 256, (count, *spec.shape), dtype=np.uint8)


def mnist_folder(directory: Path, count: int = 64) -> Path:
    """The first ``count`` real MNIST images, as official train and test files in
    ``directory`` (for the bundled ``mnist`` dataset's ``root``), from the copy gankit ships."""
    from importlib.resources import files

    bundled = files("gankit_plugins") / "data" / "mnist"
    directory.mkdir(parents=True, exist_ok=True)
    for kind, header in (("images-idx3-ubyte", 16), ("labels-idx1-ubyte", 8)):
        data = gzip.decompress((bundled / f"t10k-{kind}.gz").read_bytes())
        item = 28 * 28 if kind.startswith("images") else 1
        head = bytearray(data[:header])
        head[4:8] = count.to_bytes(4, "big")
        body = bytes(head) + data[header:header + count * item]
        for split in ("train", "t10k"):
            (directory / f"{split}-{kind}.gz").write_bytes(gzip.compress(body))
    return directory


def _component(registry: Registry, kind: str, name: str) -> Component:
    try:
        return registry.get(kind, name)
    except LookupError as error:
        raise AssertionError(f"{error} (is the package installed, with its entry point?)") from None


def _params(component: Component, values: dict[str, Any] | None):
    if component.params is None:
        assert not values, f"{component.kind} {component.name!r} takes no parameters (got {values})"
        return None
    return validate_params(component.params, values or {})


def _backend_params(component: Component, values: dict[str, Any] | None):
    """The backend's parameters, on the CPU unless ``values`` say otherwise."""
    defaults = {"device": "cpu"} if component.params is not None and "device" in component.params.model_fields else {}
    return _params(component, {**defaults, **(values or {})})


class _Stepper:
    """A backend's trainer on ``images``, stepped by gankit's own schedule, as a run steps it."""

    def __init__(self, backend: Component, backend_params, architecture: nn.Architecture, spec: DataSpec,
                 images: np.ndarray, train: TrainConfig, seed: int):
        from gankit.training import Schedule
        from gankit.updates import check_supported

        self.trainer = backend.factory(backend_params).trainer(architecture, spec, train, seed)
        check_supported(train, architecture, self.trainer)
        self.trainer.set_data(images)
        self.schedule = Schedule(len(images), train.batch_size, train.d_steps, seed)

    def steps(self, start: int, stop: int) -> list[dict[str, float]]:
        return [{key: float(value) for key, value in self.trainer.train_step(self.schedule.batches(step), step).items()}
                for step in range(start, stop)]


def _check_samples(images: Any, count: int, spec: DataSpec, what: str) -> None:
    assert isinstance(images, np.ndarray) and images.dtype == np.uint8, f"{what}: not a uint8 array ({type(images)})"
    assert images.shape == (count, *spec.shape), f"{what}: shape {images.shape}, expected {(count, *spec.shape)}"


def check_architecture(name: str, params: dict[str, Any] | None = None, *, spec: DataSpec | None = None,
                       backends: Iterable[str] | None = None, steps: int = 2, batch_size: int = 8,
                       registry: Registry | None = None) -> dict[str, dict[str, int]]:
    """Build architecture ``name`` for ``spec`` (default 28x28 greyscale, 10 classes),
    check its shapes, and train ``steps`` steps on noise images on each backend (default:
    every installed one it supports). Returns the parameter counts by backend."""
    registry = registry or load_registry()
    component = _component(registry, "architecture", name)
    spec = spec or DataSpec(28, 28, 1, 10)
    architecture = component.factory(_params(component, params), spec)
    assert isinstance(architecture, nn.Architecture), f"the factory returned {type(architecture).__name__}, " \
                                                      "not a gankit.nn.Architecture"
    try:
        architecture.check(spec.shape, batch_size)
    except nn.ShapeError as error:
        raise AssertionError(f"architecture {name!r} does not fit {spec.shape}: {error}") from None
    described = architecture.generator is not None and architecture.discriminator is not None
    supported = component.backends if component.backends is not None else installed_backends(registry)
    chosen = [b for b in (backends if backends is not None else supported) if b in installed_backends(registry)]
    assert chosen, f"architecture {name!r}: none of its backends ({', '.join(supported) or 'none'}) is installed"
    train = TrainConfig(steps=steps, batch_size=batch_size)
    counts = {}
    for backend_name in chosen:
        backend = _component(registry, "backend", backend_name)
        stepper = _Stepper(backend, _backend_params(backend, None), architecture, spec,
                           noise_images(spec, batch_size * 2), train, seed=0)
        for step, losses in enumerate(stepper.steps(0, steps)):
            assert all(math.isfinite(v) for v in losses.values()), f"{backend_name}: step {step} losses {losses}"
        _check_samples(stepper.trainer.fixed_samples(), train.samples, spec, f"{backend_name}: fixed_samples()")
        _check_samples(stepper.trainer.generate(3, seed=1), 3, spec, f"{backend_name}: generate(3)")
        counts[backend_name] = stepper.trainer.parameter_counts()
        if described:
            expected = {"generator": architecture.generator.parameter_count(),
                        "discriminator": architecture.discriminator.parameter_count()}
            assert counts[backend_name] == expected, \
                f"{backend_name} trains {counts[backend_name]} parameters; the gankit.nn description has {expected}"
    return counts


def check_dataset(name: str, params: dict[str, Any] | None = None, *, splits: Iterable[str] = ("train",),
                  context: DataContext | None = None, registry: Registry | None = None) -> dict[str, ImageData]:
    """Load each of ``splits`` of dataset ``name`` and check it is what the hook promises:
    an ``ImageData`` of uint8 (N, H, W, C) images with C 1 or 3, one int label each (in
    range when the classes are named), the same image size in every split."""
    registry = registry or load_registry()
    component = _component(registry, "dataset", name)
    context = context or DataContext(warn=lambda message: None, info=lambda message: None)
    dataset = component.factory(_params(component, params), context)
    assert callable(getattr(dataset, "load", None)), f"dataset {name!r}: its factory's object has no load(split)"
    loaded = {}
    for split in splits:
        data = dataset.load(split)
        assert isinstance(data, ImageData), f"load({split!r}) returned {type(data).__name__}, not gankit.data.ImageData"
        images, labels = data.images, data.labels
        assert images.dtype == np.uint8 and images.ndim == 4, f"{split}: images {images.dtype} {images.shape}"
        assert len(images) > 0 and images.shape[3] in (1, 3), f"{split}: images of shape {images.shape}"
        assert np.issubdtype(np.asarray(labels).dtype, np.integer) and len(labels) == len(images), \
            f"{split}: labels {np.asarray(labels).dtype} {np.shape(labels)} for {len(images)} images"
        if data.class_names:
            assert ((labels >= -1) & (labels < len(data.class_names))).all(), \
                f"{split}: labels outside -1..{len(data.class_names) - 1}"
        loaded[split] = data
    shapes = {split: data.images.shape[1:] for split, data in loaded.items()}
    assert len(set(shapes.values())) <= 1, f"the splits' images differ in size: {shapes}"
    return loaded


def check_exporter(name: str, directory: Path, params: dict[str, Any] | None = None, *,
                   with_exporters: Iterable[dict[str, Any]] = (), steps: int = 4, backend: str | None = None) -> Path:
    """A real ``gankit run`` of ``steps // 2`` steps of a small MLP on 64 MNIST images with
    exporter ``name`` (after ``with_exporters``, e.g. ``[{"use": "png"}]`` for one that reads
    the png grids), then ``gankit run --resume`` to ``steps``; an exporter failure stops the
    run. Returns the run directory (in ``directory``) for your own assertions on its files."""
    import tomli_w
    from click.testing import CliRunner

    from gankit.cli import main

    backend = backend or installed_backends()[0]
    recipe = {
        "name": f"check-{name}",
        "dataset": {"use": "mnist", "root": str(mnist_folder(directory / "mnist")), "download": False},
        "architecture": {"use": "mlp", "g_hidden": [16], "d_hidden": [16]},
        "backend": {"use": backend, "device": "cpu"},
        "train": {"steps": max(steps // 2, 1), "batch_size": 16, "log_every": 1, "checkpoint_every": 1,
                  "on_exporter_error": "stop"},
        "export": [*with_exporters, {"use": name, **(params or {})}],
    }
    path = directory / f"check-{name}.toml"
    path.write_text(tomli_w.dumps(recipe))
    runs = directory / "runs"
    for args in (["run", str(path), "--runs-dir", str(runs)],
                 ["run", "--resume", "latest", "--runs-dir", str(runs), "--set", f"train.steps={steps}"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"gankit {' '.join(args)} exited {result.exit_code}:\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    (run_dir,) = sorted(runs.iterdir())
    return run_dir


def _tiny_architecture(spec: DataSpec, width: int) -> nn.Architecture:
    """A small MLP with BatchNorm in G and Dropout in D: running statistics and random
    masks are state a lossless resume must carry."""
    generator = nn.Network((8,), (nn.Dense(width), nn.BatchNorm(), nn.ReLU(), nn.Dense(math.prod(spec.shape)),
                                  nn.Tanh(), nn.Reshape(spec.shape)))
    discriminator = nn.Network(spec.shape, (nn.Flatten(), nn.Dense(width), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                                            nn.Dense(1)))
    return nn.Architecture(8, generator, discriminator)


def check_backend(name: str, params: dict[str, Any] | None = None, *, train: dict[str, Any] | None = None,
                  steps: int = 4, registry: Registry | None = None) -> None:
    """The checks every backend passes, on a small MLP with BatchNorm and Dropout trained
    with two D steps per G step (``train`` adds or overrides settings of the ``[train]``
    table): the same seed gives the same losses and samples; saving at ``steps // 2`` and
    resuming in a fresh trainer gives exactly the straight run's losses and samples;
    ``load(generator_only=True)`` draws the same samples; a missing, truncated or
    mismatched checkpoint raises ``gankit.backend.CheckpointError``."""
    registry = registry or load_registry()
    component = _component(registry, "backend", name)
    backend_params = _backend_params(component, params)
    spec = DataSpec(8, 8, 1)
    config = validate_params(TrainConfig, {"steps": steps, "batch_size": 8, "d_steps": 2, **(train or {})})
    images = noise_images(spec, 64)

    def stepper(width: int = 16) -> _Stepper:
        return _Stepper(component, backend_params, _tiny_architecture(spec, width), spec, images, config, seed=3)

    # Each trainer is built and stepped before the next is built, as runs are: a backend may
    # keep its random state in its framework's global generator, seeded by the trainer.
    again = stepper()
    repeated, repeated_samples = again.steps(0, steps), again.trainer.fixed_samples()
    with tempfile.TemporaryDirectory() as scratch:
        middle, end = Path(scratch) / "middle", Path(scratch) / "end"
        straight = stepper()
        losses = straight.steps(0, steps)
        final_samples, drawn = straight.trainer.fixed_samples(), straight.trainer.generate(5, seed=7)
        end.mkdir()
        straight.trainer.save(end)
        assert losses == repeated, f"{name}: the same seed gave other losses"
        assert np.array_equal(final_samples, repeated_samples), f"{name}: the same seed gave other samples"

        first, half = stepper(), steps // 2
        head = first.steps(0, half)
        middle.mkdir()
        first.trainer.save(middle)
        resumed = stepper()
        resumed.trainer.load(middle)
        assert head + resumed.steps(half, steps) == losses, f"{name}: a resumed run's losses differ from a straight one's"
        assert np.array_equal(resumed.trainer.fixed_samples(), final_samples), \
            f"{name}: a resumed run's samples differ from a straight one's"

        generator_only = stepper()
        generator_only.trainer.load(end, generator_only=True)
        assert np.array_equal(generator_only.trainer.generate(5, seed=7), drawn), \
            f"{name}: load(generator_only=True) draws other samples than the saved generator"

        _check_refuses_damage(name, stepper, end, Path(scratch))


def _check_refuses_damage(name: str, stepper, saved: Path, scratch: Path) -> None:
    def refused(directory: Path, what: str, **load) -> None:
        try:
            stepper().trainer.load(directory, **load)
        except CheckpointError:
            return
        except Exception as error:
            raise AssertionError(f"{name}: {what} raised {type(error).__name__}: {error}, "
                                 "not gankit.backend.CheckpointError") from None
        raise AssertionError(f"{name}: {what} loaded without an error")

    refused(scratch / "missing", "a missing checkpoint directory")
    files = [p for p in sorted(saved.rglob("*")) if p.is_file() and p.stat().st_size > 0]
    assert files, f"{name}: save() wrote no files"
    for file in files:
        damaged = scratch / f"damaged-{file.name}"
        shutil.copytree(saved, damaged)
        target = damaged / file.relative_to(saved)
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        refused(damaged, f"a checkpoint whose {file.relative_to(saved)} is cut in half")
    wider = scratch / "wider"
    wider.mkdir()
    stepper(width=24).trainer.save(wider)
    refused(wider, "a checkpoint of wider networks")
    refused(wider, "a checkpoint of wider networks (generator only)", generator_only=True)
