"""Recipe -> components -> run directory -> training -> events.

Everything that can fail on bad input (data, architecture shapes, backend, schedule)
is built before the run directory is created, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import tomli_w

from gankit import __version__
from gankit.backend import BackendError
from gankit.data import DataContext, DataError, DataSpec, ImageData
from gankit.events import Event, RunFinished, StepLogged
from gankit.files import write_json, write_text
from gankit.nn import Architecture, ShapeError
from gankit.recipe import Choice, Recipe, read_toml
from gankit.training import Loop, Schedule, ScheduleError


class RunError(Exception):
    """A run could not start. The message is one line that says what to fix."""


@dataclass
class RunResult:
    recipe: Recipe
    run_dir: Path
    finished: RunFinished
    seconds: float


def next_run_dir(runs_root: Path, name: str) -> Path:
    """Create and return ``runs_root/NNNNN-name``, one past the highest number there."""
    runs_root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:5]) for p in runs_root.iterdir() if p.name[:5].isdigit() and p.name[5:6] == "-"]
    number = max(numbers, default=-1) + 1
    while True:
        path = runs_root / f"{number:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def _require(choice: Choice) -> None:
    missing = choice.component.missing_requirements()
    if missing:
        raise RunError(
            f"{choice.component.kind} {choice.name!r} needs {', '.join(missing)}, which is not installed; "
            f"pip install 'gankit[{missing[0]}]'"
        )


def build_architecture(recipe: Recipe, spec) -> Architecture:
    _require(recipe.architecture)
    component = recipe.architecture.component
    backends = component.backends
    if backends is not None and recipe.backend.name not in backends:
        raise RunError(
            f"architecture {component.name!r} supports only the {', '.join(backends)} backend(s), "
            f"not {recipe.backend.name!r}; set backend.use to one of them"
        )
    try:
        return component.factory(recipe.architecture.params, spec)
    except (ShapeError, ValueError) as error:
        raise RunError(f"{recipe.path}: architecture: {error}") from None


def build_trainer(recipe: Recipe, spec):
    """The backend's trainer for this recipe, without data (also used by ``gankit sample``)."""
    architecture = build_architecture(recipe, spec)
    _require(recipe.backend)
    try:
        backend = recipe.backend.component.factory(recipe.backend.params)
        return backend.trainer(architecture, spec, recipe.train, recipe.seed)
    except (BackendError, ShapeError) as error:
        raise RunError(f"{recipe.path}: backend: {error}") from None


def load_data(recipe: Recipe, context: DataContext) -> ImageData:
    _require(recipe.dataset)
    try:
        return recipe.dataset.component.factory(recipe.dataset.params, context).load("train")
    except DataError as error:
        raise RunError(f"{recipe.path}: dataset: {error}") from None


def provenance(recipe: Recipe, spec: DataSpec) -> dict[str, Any]:
    """The ``[gankit]`` table of a run's recipe.toml: versions, and the data's shape so that
    ``gankit sample`` can rebuild the networks without loading the data."""
    choices = [recipe.dataset, recipe.architecture, recipe.backend, *recipe.exports]
    return {
        "version": __version__,
        "plugins": {f"{c.component.kind}.{c.name}": c.component.provider for c in choices},
        "data_spec": asdict(spec),
    }


def spec_of_run(run_dir: Path) -> DataSpec:
    table = read_toml(run_dir / "recipe.toml").get("gankit", {}).get("data_spec")
    if not isinstance(table, dict):
        raise RunError(f"{run_dir / 'recipe.toml'}: no [gankit.data_spec]; is this a gankit run directory?")
    return DataSpec(**table)


class MetricsWriter:
    """Appends one JSON line per logged step to metrics.jsonl, flushed as it goes."""

    def __init__(self, path: Path):
        self.path = path

    def handle(self, event: Event) -> None:
        if isinstance(event, StepLogged):
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"step": event.step, "epoch": event.epoch, **event.values}) + "\n")


def run(
    recipe: Recipe,
    *,
    runs_root: Path,
    context: DataContext,
    listeners: list[Callable[[Event], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    data = load_data(recipe, context)
    trainer = build_trainer(recipe, data.spec)
    try:
        schedule = Schedule(len(data.images), recipe.train.batch_size, recipe.train.d_steps, recipe.seed)
    except ScheduleError as error:
        raise RunError(f"{recipe.path}: train: {error}") from None

    resolved = tomli_w.dumps({**recipe.as_dict(), "gankit": provenance(recipe, data.spec)})
    run_dir = next_run_dir(runs_root, recipe.name)
    write_text(run_dir / "recipe.toml", resolved)
    exporters = [choice.component.factory(choice.params, run_dir) for choice in recipe.exports]
    handlers = [MetricsWriter(run_dir / "metrics.jsonl").handle, *(e.handle for e in exporters), *listeners]

    def emit(event: Event) -> None:
        for handler in handlers:
            handler(event)

    trainer.set_data(data.images)
    loop = Loop(
        trainer=trainer,
        train=recipe.train,
        schedule=schedule,
        run_dir=run_dir,
        emit=emit,
        sample_every=[e.sample_every for e in exporters if getattr(e, "sample_every", None) is not None],
        should_stop=should_stop,
    )
    started = time.perf_counter()
    finished = loop.run()
    seconds = time.perf_counter() - started
    write_json(run_dir / "summary.json", {
        "name": recipe.name,
        "status": finished.status,
        "message": finished.message,
        "steps": finished.step,
        "total_steps": loop.total_steps(),
        "seconds": round(seconds, 3),
        "final": finished.values,
        "parameters": trainer.parameter_counts(),
        "data": {"source": data.source, "images": int(len(data.images)), "shape": list(data.spec.shape)},
        "backend": recipe.backend.name,
    })
    return RunResult(recipe, run_dir, finished, seconds)
