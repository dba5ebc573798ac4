"""Recipe -> components -> run directory -> training -> events.

Everything that can fail on bad input (data, architecture shapes, backend, schedule)
is built before the run directory is created, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import tomli_w

from gankit import __version__
from gankit.backend import BackendError, CheckpointError
from gankit.curves import CurvesWriter
from gankit.data import DataContext, DataError, DataSpec, ImageData
from gankit.evaluation import EvalError, Evaluator, TrainingEvaluation
from gankit.events import EvalLogged, Event, RunFinished, StepLogged
from gankit.files import write_json, write_text
from gankit.nn import Architecture, ShapeError
from gankit.recipe import Choice, Recipe, apply_overrides, build_recipe, read_toml
from gankit.training import Loop, Schedule, ScheduleError, list_checkpoints, read_meta
from gankit.updates import check_supported


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


def install_hint(module: str) -> str:
    """``pip install 'gankit[EXTRA]'`` for the extra of gankit's that brings ``module``,
    else ``pip install MODULE``."""
    try:
        requirements = metadata.requires("gankit") or []
    except metadata.PackageNotFoundError:
        requirements = []
    normal = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        extra = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        if extra and normal(re.split(r"[^\w.-]", name.strip())[0]) == normal(module):
            return f"pip install 'gankit[{extra.group(1)}]'"
    return f"pip install {module}"


def _require(choice: Choice) -> None:
    missing = choice.component.missing_requirements()
    if missing:
        raise RunError(
            f"{choice.component.kind} {choice.name!r} needs {', '.join(missing)}, which is not installed; "
            f"{install_hint(missing[0])}"
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
    if getattr(recipe.architecture.params, "conditional", False) and not spec.classes:
        raise RunError(f"{recipe.path}: architecture.conditional needs labelled data, and dataset "
                       f"{recipe.dataset.name!r} gives no classes; set conditional = false")
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
        trainer = backend.trainer(architecture, spec, recipe.train, recipe.seed)
    except (BackendError, ShapeError) as error:
        raise RunError(f"{recipe.path}: backend: {error}") from None
    try:
        check_supported(recipe.train, architecture, trainer)
    except ValueError as error:
        raise RunError(f"{recipe.path}: {error}") from None
    return trainer


def trainer_classes(trainer) -> int:
    """How many classes a trainer's generator draws (0: unconditional)."""
    return getattr(trainer, "classes", 0)


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
        "sweep": recipe.sweep,
    }


def spec_of_run(run_dir: Path) -> DataSpec:
    table = read_toml(run_dir / "recipe.toml").get("gankit", {}).get("data_spec")
    if not isinstance(table, dict):
        raise RunError(f"{run_dir / 'recipe.toml'}: no [gankit.data_spec]; is this a gankit run directory?")
    return DataSpec(**table)


class MetricsWriter:
    """Appends one JSON line per logged step and per evaluation to metrics.jsonl, flushed as it goes."""

    def __init__(self, path: Path):
        self.path = path

    def handle(self, event: Event) -> None:
        if isinstance(event, (StepLogged, EvalLogged)):
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"step": event.step, "epoch": event.epoch, **event.values}) + "\n")


@dataclass
class Prepared:
    """Everything a run needs, built (and so checked) before anything is written."""

    recipe: Recipe
    data: ImageData
    trainer: object
    schedule: Schedule
    evaluator: Evaluator | None = None


def prepare(recipe: Recipe, context: DataContext) -> Prepared:
    for export in recipe.exports:
        _require(export)
    data = load_data(recipe, context)
    trainer = build_trainer(recipe, data.spec)
    try:
        schedule = Schedule(len(data.images), recipe.train.batch_size, recipe.train.d_steps, recipe.seed)
    except ScheduleError as error:
        raise RunError(f"{recipe.path}: train: {error}") from None
    if trainer_classes(trainer) and not data.labelled:
        raise RunError(f"{recipe.path}: architecture.conditional needs every training image labelled, and "
                       f"dataset {recipe.dataset.name!r} has unlabelled ones; set conditional = false")
    trainer.set_data(data.images, data.labels if trainer_classes(trainer) else None)
    return Prepared(recipe, data, trainer, schedule, _evaluator(recipe, context, data))


def _evaluator(recipe: Recipe, context: DataContext, data: ImageData) -> Evaluator | None:
    """The ``[eval]`` scorer, made before training so that, say, missing weights fail the start."""
    if recipe.eval is None:
        return None
    try:
        return Evaluator(recipe.eval, recipe, cache_dir=context.cache_dir, loaded={"train": data},
                         info=context.info, warn=context.warn)
    except EvalError as error:
        raise RunError(f"{recipe.path}: eval: {error}") from None


def run(
    recipe: Recipe,
    *,
    runs_root: Path,
    context: DataContext,
    listeners: list[Callable[[Event], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Start a new run of ``recipe`` in a fresh ``runs_root/NNNNN-name`` directory."""
    prepared = prepare(recipe, context)
    resolved = tomli_w.dumps({**recipe.as_dict(), "gankit": provenance(recipe, prepared.data.spec)})
    run_dir = next_run_dir(runs_root, recipe.name)
    write_text(run_dir / "recipe.toml", resolved)
    return _train(prepared, run_dir, listeners, should_stop)


RESUME_OVERRIDES = ("train.steps", "train.epochs")


def damaged_checkpoint(error: CheckpointError, checkpoints: list[Path], damaged: Path) -> str:
    """The message for a checkpoint that cannot be loaded, pointing at the one before it."""
    if damaged not in checkpoints:
        return str(error)
    earlier = checkpoints[: checkpoints.index(damaged)]
    if not earlier:
        return f"{error}; no earlier checkpoint is left"
    return f"{error}; the previous checkpoint is {earlier[-1]}: delete {damaged} to use it"


def resolve_checkpoint(run_dir: Path, name: str | None) -> Path:
    """The run's last checkpoint, or the one named (``best``, ``step_00000500``, or a path)."""
    if name is None:
        found = list_checkpoints(run_dir)
        if not found:
            raise RunError(f"{run_dir}: no checkpoint yet; train the run first")
        return found[-1]
    for candidate in (run_dir / "checkpoints" / name, Path(name)):
        if (candidate / "meta.json").is_file():
            return candidate
    folder = run_dir / "checkpoints"
    known = sorted(p.name for p in folder.iterdir() if (p / "meta.json").is_file()) if folder.is_dir() else []
    raise RunError(f"--checkpoint {name}: no such checkpoint in {folder} (known: {', '.join(known) or 'none'})")


def load_generator(registry, run_dir: Path, checkpoint: str | None = None):
    """A run's recipe, and its trainer holding the generator of one checkpoint (the last,
    by default): what ``gankit sample`` and ``gankit evaluate`` draw from."""
    recipe_path = run_dir / "recipe.toml"
    recipe = build_recipe(read_toml(recipe_path), recipe_path, registry)
    chosen = resolve_checkpoint(run_dir, checkpoint)
    trainer = build_trainer(recipe, spec_of_run(run_dir))
    try:
        trainer.load(chosen, generator_only=True)
    except CheckpointError as error:
        raise RunError(damaged_checkpoint(error, list_checkpoints(run_dir), chosen)) from None
    return recipe, trainer, chosen


def resume(
    run_dir: Path,
    registry,
    *,
    overrides: list[str] = (),
    context: DataContext,
    listeners: list[Callable[[Event], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Continue a run from its last checkpoint, exactly where it stopped. Only the length of
    training may change (``--set train.steps=N``); anything else would not be the same run."""
    for override in overrides:
        if override.partition("=")[0].strip() not in RESUME_OVERRIDES:
            raise RunError(f"--set {override}: a resumed run can only change {' or '.join(RESUME_OVERRIDES)}")
    recipe_path = run_dir / "recipe.toml"
    raw = read_toml(recipe_path)
    if overrides:
        raw.setdefault("train", {}).pop("steps", None)
    recipe = build_recipe(apply_overrides(raw, list(overrides), recipe_path), recipe_path, registry)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise RunError(f"{run_dir}: no checkpoint to resume from; start it again with gankit run")
    prepared = prepare(recipe, context)
    total = recipe.train.total_steps(prepared.schedule.steps_per_epoch)
    try:
        step = int(read_meta(checkpoints[-1])["step"])
        if step >= total:
            raise RunError(f"{run_dir} already trained to step {step} of {total}; "
                           f"to train longer: gankit run --resume {run_dir} --set train.steps=N")
        prepared.trainer.load(checkpoints[-1])
    except CheckpointError as error:
        raise RunError(damaged_checkpoint(error, checkpoints, checkpoints[-1])) from None
    if overrides:
        resolved = {**recipe.as_dict(), "gankit": {**raw.get("gankit", {}), "version": __version__}}
        write_text(recipe_path, tomli_w.dumps(resolved))
    return _train(prepared, run_dir, listeners, should_stop, start_step=step)


def _train(prepared: Prepared, run_dir: Path, listeners, should_stop, start_step: int = 0) -> RunResult:
    recipe = prepared.recipe
    exporters = [choice.component.factory(choice.params, run_dir) for choice in recipe.exports]
    handlers = [MetricsWriter(run_dir / "metrics.jsonl").handle, CurvesWriter(run_dir).handle,
                *(e.handle for e in exporters), *listeners]

    def emit(event: Event) -> None:
        for handler in handlers:
            handler(event)

    if prepared.evaluator is not None:
        handlers.append(TrainingEvaluation(prepared.evaluator, prepared.trainer, run_dir, emit).handle)
    loop = Loop(
        trainer=prepared.trainer,
        train=recipe.train,
        schedule=prepared.schedule,
        run_dir=run_dir,
        emit=emit,
        sample_every=[e.sample_every for e in exporters if getattr(e, "sample_every", None) is not None],
        should_stop=should_stop,
    )
    started = time.perf_counter()
    try:
        finished = loop.run(start_step)
    except KeyboardInterrupt:
        found = list_checkpoints(run_dir)
        finished = RunFinished(start_step, "aborted", f"aborted; the last checkpoint is {found[-1] if found else 'none'}")
        _write_summary(prepared, run_dir, finished, loop.total_steps(), time.perf_counter() - started)
        raise
    seconds = time.perf_counter() - started
    _write_summary(prepared, run_dir, finished, loop.total_steps(), seconds)
    return RunResult(recipe, run_dir, finished, seconds)


def _write_summary(prepared: Prepared, run_dir: Path, finished: RunFinished, total: int, seconds: float) -> None:
    data = prepared.data
    write_json(run_dir / "summary.json", {
        "name": prepared.recipe.name,
        "status": finished.status,
        "message": finished.message,
        "steps": finished.step,
        "total_steps": total,
        "seconds": round(seconds, 3),
        "final": finished.values,
        "parameters": prepared.trainer.parameter_counts(),
        "data": {"source": data.source, "images": int(len(data.images)), "shape": list(data.spec.shape)},
        "backend": prepared.recipe.backend.name,
        "sweep": prepared.recipe.sweep,
    })
