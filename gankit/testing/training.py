"""``check_architecture`` and ``check_backend``: networks that build, fit and train, and
trainers that are deterministic and resume losslessly."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gankit import nn
from gankit.backend import CheckpointError, trainer_classes
from gankit.data import DataSpec, fixed_labels
from gankit.params import validate_params
from gankit.plugins import load_registry
from gankit.registry import Registry
from gankit.testing.common import Stepper, backend_params, check_samples, component, validated
from gankit.testing.fixtures import installed_backends, labelled_images, tiny_architecture
from gankit.train_config import TrainConfig


def check_architecture(name: str, params: dict[str, Any] | None = None, *, spec: DataSpec | None = None,
                       backends: Iterable[str] | None = None, steps: int = 2, batch_size: int = 8,
                       registry: Registry | None = None) -> dict[str, dict[str, int]]:
    """Build architecture ``name`` with ``params`` for ``spec`` (default 28x28
    greyscale, 10 classes), check its shapes, and train ``steps`` steps of ``batch_size``
    on the kit's labelled squares (``labelled_images``; a conditional architecture gets
    their labels) on each backend (default: every installed one it supports). Returns the
    parameter counts by backend."""
    registry = registry or load_registry()
    found = component(registry, "architecture", name)
    spec = spec or DataSpec(28, 28, 1, 10)
    chosen_params = validated(found, params)
    architecture = found.factory(chosen_params, spec)
    assert isinstance(architecture, nn.Architecture), f"the factory returned {type(architecture).__name__}, " \
                                                      "not a gankit.nn.Architecture"
    try:
        architecture.check(spec.shape, batch_size)
    except nn.ShapeError as error:
        raise AssertionError(f"architecture {name!r} does not fit {spec.shape}: {error}") from None
    described = architecture.generator is not None and architecture.discriminator is not None
    declared = found.backends_for(chosen_params)
    installed = installed_backends(registry)
    supported = list(declared) if declared is not None else installed
    chosen = [b for b in (backends if backends is not None else supported) if b in installed]
    assert chosen, f"architecture {name!r}: none of its backends ({', '.join(supported) or 'none'}) is installed"
    train = TrainConfig(steps=steps, batch_size=batch_size)
    data = labelled_images(spec, batch_size * 2)
    counts = {}
    for backend_name in chosen:
        backend = component(registry, "backend", backend_name)
        stepper = Stepper(backend, backend_params(backend, None), architecture, spec, data, train, seed=0)
        for step, losses in enumerate(stepper.steps(0, steps)):
            assert all(math.isfinite(v) for v in losses.values()), f"{backend_name}: step {step} losses {losses}"
        classes = trainer_classes(stepper.trainer)
        fixed = len(fixed_labels(classes, train.samples)) if classes else train.samples  # a row of each class
        check_samples(stepper.trainer.fixed_samples(), fixed, spec, f"{backend_name}: fixed_samples()")
        check_samples(stepper.trainer.generate(3, seed=1), 3, spec, f"{backend_name}: generate(3)")
        counts[backend_name] = stepper.trainer.parameter_counts()
        if described:
            expected = {"generator": architecture.generator.parameter_count(),
                        "discriminator": architecture.discriminator.parameter_count()}
            assert counts[backend_name] == expected, \
                f"{backend_name} trains {counts[backend_name]} parameters; the gankit.nn description has {expected}"
    return counts


def check_backend(name: str, params: dict[str, Any] | None = None, *, train: dict[str, Any] | None = None,
                  steps: int = 4, registry: Registry | None = None) -> None:
    """The checks every backend passes, on the kit's small dense network with BatchNorm and Dropout
    (``tiny_architecture``) trained with two D steps per G step (``train`` adds or
    overrides settings of the ``[train]`` table): the same seed gives the same losses and
    samples; saving at ``steps // 2`` and resuming in a fresh trainer gives exactly the
    straight run's losses and samples; ``load(generator_only=True)`` draws the same
    samples; a missing, truncated or mismatched checkpoint raises
    ``gankit.backend.CheckpointError``."""
    registry = registry or load_registry()
    found = component(registry, "backend", name)
    chosen_params = backend_params(found, params)
    spec = DataSpec(8, 8, 1)
    config = validate_params(TrainConfig, {"steps": steps, "batch_size": 8, "d_steps": 2, **(train or {})})
    data = labelled_images(spec, 64)

    def stepper(width: int = 16) -> Stepper:
        return Stepper(found, chosen_params, tiny_architecture(spec, width), spec, data, config, seed=3)

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
