"""What the checks share: finding a component, validating its parameters, and stepping a
backend's trainer as a run steps it."""

from __future__ import annotations

from typing import Any

import numpy as np

from gankit import nn
from gankit.backend import trainer_classes
from gankit.data import DataSpec, ImageData
from gankit.params import BadParams, checked_params
from gankit.registry import Component, Registry
from gankit.train_config import TrainConfig


def component(registry: Registry, kind: str, name: str) -> Component:
    try:
        return registry.get(kind, name)
    except LookupError as error:
        raise AssertionError(f"{error} (is the package installed, with its entry point?)") from None


def validated(component: Component, values: dict[str, Any] | None):
    """``values`` validated as a recipe validates them (``checked_params``); None for a
    component without parameters; an AssertionError naming the component and the key."""
    try:
        return checked_params(component.params, values or {})
    except BadParams as error:
        raise AssertionError(f"{component.kind} {component.name!r}: {error}") from None


def backend_params(component: Component, values: dict[str, Any] | None):
    """The backend's parameters, on the CPU unless ``values`` say otherwise."""
    return validated(component, {**cpu(component), **(values or {})})


def cpu(backend: Component) -> dict[str, str]:
    """``{"device": "cpu"}`` for a backend that has a ``device`` parameter."""
    fields = backend.params.model_fields if backend.params is not None else {}
    return {"device": "cpu"} if "device" in fields else {}


class Stepper:
    """A backend's trainer on ``data``, stepped by gankit's own schedule, as a run steps it;
    a conditional trainer gets the labels, as a run's does."""

    def __init__(self, backend: Component, backend_params, architecture: nn.Architecture, spec: DataSpec,
                 data: ImageData, train: TrainConfig, seed: int):
        from gankit.training import Schedule
        from gankit.updates import check_supported

        self.trainer = backend.factory(backend_params).trainer(architecture, spec, train, seed)
        check_supported(train, architecture, self.trainer)
        self.trainer.set_data(data.images, data.labels if trainer_classes(self.trainer) else None)
        self.schedule = Schedule(len(data.images), train.batch_size, train.d_steps, seed)

    def steps(self, start: int, stop: int) -> list[dict[str, float]]:
        return [{key: float(value) for key, value in self.trainer.train_step(self.schedule.batches(step), step).items()}
                for step in range(start, stop)]


def check_samples(images: Any, count: int, spec: DataSpec, what: str) -> None:
    assert isinstance(images, np.ndarray) and images.dtype == np.uint8, f"{what}: not a uint8 array ({type(images)})"
    assert images.shape == (count, *spec.shape), f"{what}: shape {images.shape}, expected {(count, *spec.shape)}"
