"""Recipe -> components -> run directory -> training -> events.

Everything that can fail on bad input (data, architecture shapes, backend, schedule)
is built before the run directory is created, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import tomli_w

from gankit import __version__
from gankit.backend import BackendError, CheckpointError, trainer_classes
from gankit.curves import CurvesWriter
from gankit.data import DataContext, DataError, DataSpec, ImageData
from gankit.errors import PluginFault
from gankit.evaluation import EvalError
from gankit.scoring import Evaluator
from gankit.training_eval import TrainingEvaluation
from gankit.events import EvalLogged, Event, RunFinished, StepLogged
from gankit.files import remove_leftovers, write_json, write_text
from gankit.nn import Architecture, ShapeError
from gankit.recipe import Choice, Recipe, RecipeError, apply_overrides, build_recipe, read_toml
from gankit import checkpoints, safekeeping
from gankit.rundir import RunDir, RunError, read_meta
from gankit.safekeeping import check_space, no_space_left, writable_root
from gankit.schedules import check_length
from gankit.training import Loop, Schedule, ScheduleError
from gankit.transfer import Source, check_freeze, check_loadable, find_source, start_from
from gankit.updates import check_supported


@dataclass
class RunResult:
    recipe: Recipe
    run_dir: Path
    finished: RunFinished
    seconds: float
    """Wall-clock seconds of the whole run, every session of a resumed one included."""


def _require(choice: Choice) -> None:
    problem = choice.component.requirement_problem()
    if problem:
        raise RunError(problem)


@contextmanager
def about(recipe: Recipe):
    """A RunError raised in the block names the recipe's file first."""
    try:
        yield
    except RunError as error:
        raise RunError(f"{recipe.path}: {error}") from None


@contextmanager
def plugin_errors(recipe: Recipe, section: str, choice: Choice, expected: tuple[type[Exception], ...] = ()):
    """Turn what a plugin's factory raises into a RunError of one line naming the recipe and
    the plugin: ``expected`` errors keep their own message, any other gets its type, and a
    PluginFault names the plugin at fault (an architecture whose native builder a backend
    called), not the one that called it."""
    try:
        yield
    except PluginFault as fault:
        owner = getattr(recipe, fault.kind).component
        raise RunError(f"{recipe.path}: {fault.kind}: {owner.kind} {owner.name!r} ({owner.provider}): {fault}") from None
    except expected as error:
        raise RunError(f"{recipe.path}: {section}: {error}") from None
    except Exception as error:
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        component = choice.component
        raise RunError(f"{recipe.path}: {section}: {component.kind} {component.name!r} ({component.provider}) "
                       f"failed: {type(error).__name__}{': ' + text if text else ''}") from None


def build_architecture(recipe: Recipe, spec) -> Architecture:
    _require(recipe.architecture)
    component = recipe.architecture.component
    with plugin_errors(recipe, "architecture", recipe.architecture, (ShapeError, ValueError)):
        architecture = component.factory(recipe.architecture.params, spec)
        architecture.check(spec.shape, recipe.train.batch_size)
    _check_memory(architecture, recipe)
    return architecture


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _check_memory(architecture: Architecture, recipe: Recipe) -> None:
    """Refuse networks that could not be trained in this machine's memory: float32 weights,
    gradients and two optimizer moments, and each layer's output kept for the backward
    pass (twice: D sees real and generated batches)."""
    networks = [n for n in (architecture.generator, architecture.discriminator) if n is not None]
    memory = _physical_memory()
    if not networks or memory is None:
        return
    parameters = sum(network.parameter_count() for network in networks)
    activations = sum(math.prod(shape) for network in networks for shape in network.shapes())
    needed = 4 * (4 * parameters + 2 * recipe.train.batch_size * activations)
    if needed > memory:
        raise RunError(f"{recipe.path}: architecture: training would need at least {needed / 2**30:,.1f} GiB "
                       f"({parameters:,} parameters), more than this machine's {memory / 2**30:,.1f} GiB of memory; "
                       "make the networks smaller (channels, hidden units) or lower train.batch_size")


def build_trainer(recipe: Recipe, spec, total_steps: int | None = None):
    """The backend's trainer for this recipe, without data (also used by ``gankit sample``).
    ``total_steps``: the run's length, which the trainer's ``train.steps`` becomes (a
    learning-rate schedule runs over it); None keeps the recipe's."""
    architecture = build_architecture(recipe, spec)
    _require(recipe.backend)
    try:
        check_freeze(recipe.train, architecture, recipe.backend.name)
    except ValueError as error:
        raise RunError(f"{recipe.path}: {error}") from None
    train = recipe.train if total_steps is None else recipe.train.model_copy(update={"steps": total_steps})
    with plugin_errors(recipe, "backend", recipe.backend, (BackendError, ShapeError)):
        backend = recipe.backend.component.factory(recipe.backend.params)
        trainer = backend.trainer(architecture, spec, train, recipe.seed)
    try:
        check_supported(recipe.train, architecture, trainer)
    except ValueError as error:
        raise RunError(f"{recipe.path}: {error}") from None
    return trainer


def load_data(recipe: Recipe, context: DataContext) -> ImageData:
    _require(recipe.dataset)
    with plugin_errors(recipe, "dataset", recipe.dataset, (DataError,)):
        return recipe.dataset.component.factory(recipe.dataset.params, context).load("train")


def provenance(recipe: Recipe, spec: DataSpec, source: Source | None = None) -> dict[str, Any]:
    """The ``[gankit]`` table of a run's recipe.toml: versions, the data's shape so that
    ``gankit sample`` can rebuild the networks without loading the data, and the checkpoint
    ``train.init_from`` started it from."""
    choices = [recipe.dataset, recipe.architecture, recipe.backend, *recipe.exports]
    return {
        "version": __version__,
        "plugins": {f"{c.component.kind}.{c.name}": c.component.provider for c in choices},
        "data_spec": asdict(spec),
        "sweep": recipe.sweep,
        "recipe_sha256": recipe_digest(recipe),
        **({"init_from": source.as_dict()} if source is not None else {}),
    }


RESUME_OVERRIDES = ("train.steps", "train.epochs", "train.max_seconds")
LENGTH_KEYS = (*RESUME_OVERRIDES, "train.clock")
"""How long a run trains: left out of its digest (so runs made before the time budget
existed keep theirs)."""


def recipe_digest(recipe: Recipe) -> str:
    """The sha256 of the resolved recipe, less the keys of its length, which a resume may
    change: a resume compares it with the one recorded at the start to catch an edited recipe.toml."""
    table = recipe.as_dict()
    table["train"] = {k: v for k, v in table["train"].items() if f"train.{k}" not in LENGTH_KEYS}
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()


def check_recipe(recipe: Recipe, raw: dict[str, Any], trained: dict[str, Any], checkpoint: Path | None,
                 advice: str) -> None:
    """Refuse a run's recipe.toml that is not the recipe that trained it. The checkpoint's
    own record (``trained``, its meta) decides when it has one: a recipe.toml copied from
    another run, or edited with its hash line deleted, is caught; one whose hash line
    alone is damaged is not. Older checkpoints: the hash recorded in recipe.toml."""
    digest = recipe_digest(recipe)
    by_checkpoint = trained.get("recipe_sha256")
    if isinstance(by_checkpoint, str):
        if by_checkpoint != digest:
            raise RunError(f"{recipe.path} was edited after the run started, or copied from another run: it is not "
                           f"the recipe that trained {checkpoint}; {advice}")
        return
    table = raw.get("gankit")
    recorded = table.get("recipe_sha256") if isinstance(table, dict) else None
    if recorded is not None and recorded != digest:
        raise RunError(f"{recipe.path} was edited after the run started; {advice}")


def _recorded_by(checkpoint: Path | None) -> dict[str, Any]:
    """A checkpoint's meta, not yet verified (empty when it has none that reads): enough to
    refuse a wrong recipe before anything is built; the verified one is checked again."""
    if checkpoint is None:
        return {}
    try:
        meta = read_meta(checkpoint)
    except CheckpointError:
        return {}
    return meta if isinstance(meta, dict) else {}


RESUME_ADVICE = (f"a resumed run can only change {' or '.join(RESUME_OVERRIDES)} (with --set): undo the edit, "
                 "or start a new run from it")
BUILD_ADVICE = "the networks it describes are not the ones trained: undo the edit (or copy back the run's own recipe.toml)"


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
    source: Source | None = None
    """The checkpoint whose weights the run started from (``train.init_from``)."""
    warnings: list[str] = field(default_factory=list)
    """What the run was warned of (summary.json keeps it), said or not (``DataContext.warn_once``)."""


def prepare(recipe: Recipe, context: DataContext, *, fresh: bool = True) -> Prepared:
    """``fresh``: the run starts at step 0 (a new run, or a resume before its first
    checkpoint), so it starts from ``train.init_from``'s weights, if the recipe names any."""
    for export in recipe.exports:
        _require(export)
    with about(recipe):
        source = find_source(recipe.train.init_from, recipe.backend.name) if fresh and recipe.train.init_from else None
    data = load_data(recipe, context)
    try:
        schedule = Schedule(len(data.images), recipe.train.batch_size, recipe.train.d_steps, recipe.seed)
    except ScheduleError as error:
        raise RunError(f"{recipe.path}: train: {error}") from None
    total = recipe.train.total_steps(schedule.steps_per_epoch)
    try:
        check_length(recipe.train, total)
    except ValueError as error:
        raise RunError(f"{recipe.path}: {error}") from None
    trainer = build_trainer(recipe, data.spec, total)
    if trainer_classes(trainer) and not data.labelled:
        raise RunError(f"{recipe.path}: architecture: a conditional architecture needs every training image "
                       f"labelled, and dataset {recipe.dataset.name!r} has unlabelled ones; choose an unconditional one")
    trainer.set_data(data.images, data.labels if trainer_classes(trainer) else None)
    if source is not None:
        with about(recipe):
            check_loadable(trainer)
            start_from(trainer, source)
    return Prepared(recipe, data, trainer, schedule, _evaluator(recipe, context, data), source, context.warnings)


def recording(context: DataContext) -> DataContext:
    """A copy of ``context`` for one run, whose ``warnings`` gets every warning of the run."""
    said: list[str] = []

    def warn(message: str) -> None:
        said.append(message)
        context.warn(message)

    return replace(context, warn=warn, warnings=said)


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
    run_dir: Path | None = None,
    world=None,
) -> RunResult:
    """Start a new run of ``recipe`` in a fresh ``runs_root/NNNNN-name`` directory, or in
    ``run_dir``, an empty one made beforehand (a parallel batch numbers its runs in order).
    ``world``: the processes of one run (``gankit.distributed``); rank 0 alone writes."""
    folder = writable_root(runs_root)
    _one_clock(recipe, world)
    context = recording(context)
    prepared = prepare(recipe, context)
    check_space(folder, prepared.trainer)
    if should_stop():
        raise KeyboardInterrupt("stopped before the run began; nothing was written")
    resolved = tomli_w.dumps({**recipe.as_dict(), "gankit": provenance(recipe, prepared.data.spec, prepared.source)})
    if world is not None:
        shared = world.share(RunDir.create(runs_root, recipe.name).path if world.writer else None)
        if not world.writer:
            return _train(prepared, RunDir(shared), [], should_stop, warn=context.warn, writer=False)
        run_dir = shared
    run_dir = RunDir(run_dir) if run_dir is not None else RunDir.create(runs_root, recipe.name)
    with safekeeping.lock(run_dir):
        with safekeeping.writing(run_dir):
            write_text(run_dir.recipe, resolved)
        return _train(prepared, run_dir, listeners, should_stop, warn=context.warn)


def _one_clock(recipe: Recipe, world) -> None:
    """A time budget is measured in one process: the ranks of a distributed run would not
    agree on the step where it runs out."""
    if world is not None and recipe.train.max_seconds is not None:
        raise RunError("train.max_seconds: a time budget is for runs of one process; a distributed run (--gpus, "
                       "or a launcher) ends by train.steps or train.epochs; remove max_seconds")


def load_generator(registry, run_dir: Path, checkpoint: str | None = None):
    """A run's recipe, and its trainer holding the generator of one checkpoint (the last,
    by default), verified first, with the recipe checked against what trained it: what
    ``gankit sample`` and ``gankit evaluate`` draw from."""
    run = RunDir(run_dir)
    if problem := run.not_a_run():
        raise RunError(problem)
    raw = read_toml(run.recipe)
    recipe = build_recipe(raw, run.recipe, registry)
    if checkpoint == "best" and recipe.eval is None and not run.best.is_dir():
        known = ", ".join(p.name for p in run.list_checkpoints()) or "none yet"
        raise RunError(f"--checkpoint best: best is the checkpoint with the best score of the recipe's [eval], and "
                       f"{run.recipe} has no [eval] table; leave --checkpoint out for the last one, or name one of "
                       f"{known} (to keep a best, add [eval] to the recipe of a new run)")
    chosen = checkpoints.resolve(run, checkpoint)  # no checkpoint at all: say so before building anything
    check_recipe(recipe, raw, _recorded_by(chosen), chosen, BUILD_ADVICE)
    trainer = build_trainer(recipe, run.spec())
    chosen, _ = checkpoints.load(run, trainer, checkpoint, generator_only=True,
                                    accept=lambda meta: check_recipe(recipe, raw, meta, chosen, BUILD_ADVICE))
    return recipe, trainer, chosen


def resume(
    run_dir: Path,
    registry,
    *,
    overrides: list[str] = (),
    context: DataContext,
    listeners: list[Callable[[Event], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
    world=None,
) -> RunResult:
    """Continue a run from its last checkpoint (from step 0 if it was stopped before its
    first), exactly where it stopped. Only the length of training may change
    (``--set train.steps=N``); anything else, edited into recipe.toml or not, is refused.
    ``world``: as for ``run``; every rank reads the checkpoint, rank 0 alone writes."""
    for override in overrides:
        if override.partition("=")[0].strip() not in RESUME_OVERRIDES:
            raise RunError(f"--set {override}: a resumed run can only change {' or '.join(RESUME_OVERRIDES)}")
    run = RunDir(run_dir)
    recipe_path = run.recipe
    writer = world is None or world.writer
    context = recording(context)
    with safekeeping.lock(run) if writer else nullcontext():
        try:
            raw = read_toml(recipe_path)
            if any(o.partition("=")[0].strip() in ("train.steps", "train.epochs") for o in overrides):
                raw.setdefault("train", {}).pop("steps", None)  # steps wins over epochs: a new length replaces it
            recipe = build_recipe(apply_overrides(raw, list(overrides), recipe_path), recipe_path, registry)
        except RecipeError as error:
            raise RunError(str(error)) from None
        if run.metrics.exists() and not run.metrics.is_file():
            raise RunError(f"{run.metrics} is not a file; move it away (the run's metrics were in it) and resume again")
        _one_clock(recipe, world)
        checkpoints = run.list_checkpoints()
        last = checkpoints[-1] if checkpoints else None
        check_recipe(recipe, raw, _recorded_by(last), last, RESUME_ADVICE)
        fresh = not checkpoints
        prepared = prepare(recipe, context, fresh=fresh)
        if not fresh:
            prepared.source = Source.from_dict(raw.get("gankit", {}).get("init_from"))
        step, meta = _restore(prepared, run, raw)
        if step and "run_seconds" not in meta:  # a checkpoint from before run_seconds: its summary, if of that step
            summary = run.read_summary() or {}
            recorded = summary.get("seconds")
            same = summary.get("steps") == step and isinstance(recorded, (int, float)) and math.isfinite(recorded)
            meta = {**meta, "run_seconds": float(recorded) if same else 0.0}
        logged = safekeeping.logged_at(run, step) if step else {}
        if not writer:
            return _train(prepared, run, [], should_stop, start_step=step, warn=context.warn, writer=False,
                          meta=meta, logged=logged)
        with safekeeping.writing(run):
            remove_leftovers(run.path)
            unreadable = safekeeping.truncate_metrics(run, step)
            if unreadable:
                context.warn(f"{run.metrics}: dropped line(s) {', '.join(map(str, unreadable))}, which do not read "
                             "as JSON (the file was damaged); the steps they logged are missing from the curves")
            digest = recipe_digest(recipe)
            repair = raw.get("gankit", {}).get("recipe_sha256") != digest  # the checkpoint vouched for the recipe
            if overrides or repair or (fresh and prepared.source is not None):
                recorded = {**raw.get("gankit", {}), "version": __version__, "recipe_sha256": digest}
                if fresh and prepared.source is not None:
                    recorded["init_from"] = prepared.source.as_dict()
                write_text(recipe_path, tomli_w.dumps({**recipe.as_dict(), "gankit": recorded}))
        return _train(prepared, run, listeners, should_stop, start_step=step, warn=context.warn, meta=meta,
                      logged=logged)


def _restore(prepared: Prepared, run: RunDir, raw: dict[str, Any]) -> tuple[int, dict]:
    """Load the run's last checkpoint, verified, into the trainer; its step (0 if none) and
    meta. A run whose last checkpoint is its final step but that has not written its end
    (killed, or its disk full, after that checkpoint) starts there, to be finished."""
    if not run.list_checkpoints():
        return 0, {}
    total = prepared.recipe.train.total_steps(prepared.schedule.steps_per_epoch)
    summary = run.read_summary() or {}

    def not_finished(meta: dict) -> None:
        check_recipe(prepared.recipe, raw, meta, run.list_checkpoints()[-1], RESUME_ADVICE)
        step = int(meta["step"])
        ended = summary.get("status") == "completed" and summary.get("steps") == step
        budget = prepared.recipe.train.max_seconds
        if ended and step < total and budget is not None and float(meta.get("train_seconds", 0)) >= budget:
            raise RunError(f"{run} already trained for its budget of train.max_seconds = {budget:g}; "
                           f"to train longer: gankit run --resume {run} --set train.max_seconds=S")
        if step > total or (step == total and ended):
            raise RunError(f"{run} already trained to step {meta['step']} of {total}; "
                           f"to train longer: gankit run --resume {run} --set train.steps=N")

    _, meta = checkpoints.load(run, prepared.trainer, accept=not_finished)
    return int(meta["step"]), meta


class GuardedExporter:
    """An exporter whose ``handle`` raises is reported once, then left out of the rest of
    the run; ``failure`` says what happened. A full disk is the run's to handle."""

    def __init__(self, name: str, exporter, run_dir: Path, warn: Callable[[str], None], then: str):
        self.name, self.exporter, self.run_dir, self.warn, self.then = name, exporter, run_dir, warn, then
        self.failure: str | None = None

    def handle(self, event: Event) -> None:
        if self.failure is not None:
            return
        try:
            self.exporter.handle(event)
        except Exception as error:
            if isinstance(error, OSError) and no_space_left(error, self.run_dir):
                raise
            step = getattr(event, "step", "?")
            failure = f"exporter {self.name!r} failed at step {step} ({type(error).__name__}: {error})"
            self.failure = failure.splitlines()[0]
            self.warn(f"{self.failure}; {self.then}")


def _train(prepared: Prepared, run_dir: RunDir, listeners, should_stop, start_step: int = 0,
           warn: Callable[[str], None] = print, writer: bool = True, meta: dict | None = None,
           logged: dict[str, float] | None = None) -> RunResult:
    """Train; ``writer``: whether this process writes the run directory (rank 0 of a
    distributed run, or the only process); the others only train. ``meta`` (an adaptive
    augmentation's state, the seconds the time budget has spent) and ``logged`` (the values
    logged at ``start_step``): from the checkpoint a resumed run starts at."""
    recipe = prepared.recipe
    stop_on_error = recipe.train.on_exporter_error == "stop"
    then = ("the run stops at the next step (train.on_exporter_error)" if stop_on_error
            else "it is disabled for the rest of the run")
    exporters = []
    for index, choice in enumerate(recipe.exports if writer else []):
        with plugin_errors(recipe, f"export.{index}", choice):
            exporters.append(GuardedExporter(choice.name, choice.component.factory(choice.params, run_dir),
                                             run_dir.path, warn, then))
    failures = lambda: [e.failure for e in exporters if e.failure]  # noqa: E731
    handlers = [MetricsWriter(run_dir.metrics).handle, CurvesWriter(run_dir).handle,
                *(e.handle for e in exporters), *listeners] if writer else []

    def emit(event: Event) -> None:
        for handler in handlers:
            handler(event)

    record = {"recipe_sha256": recipe_digest(recipe)}
    if prepared.evaluator is not None and writer:
        handlers.append(TrainingEvaluation(prepared.evaluator, prepared.trainer, run_dir, emit, record).handle)
    loop = Loop(
        trainer=prepared.trainer,
        train=recipe.train,
        schedule=prepared.schedule,
        run_dir=run_dir,
        emit=emit,
        sample_every=[e.exporter.sample_every for e in exporters
                      if getattr(e.exporter, "sample_every", None) is not None],
        should_stop=lambda: should_stop() or (stop_on_error and bool(failures())),
        step=start_step,
        writer=writer,
        augment_state=(meta or {}).get("augment"),
        seconds_spent=float((meta or {}).get("train_seconds", 0.0)),
        seconds_before=float((meta or {}).get("run_seconds", 0.0)),
        logged=logged,
        record=record,
    )

    def stopped(status: str, message: str) -> RunFinished:
        good = checkpoints.last_good(run_dir)
        finished = RunFinished(loop.step, status, f"{message}; the last good checkpoint is {good or 'none'}")
        try:
            if not writer:
                return finished
            _write_summary(prepared, run_dir, finished, loop)
        except OSError:
            pass  # the disk may be full: the checkpoint matters more than the summary
        return finished

    try:
        finished = loop.run(start_step)
    except KeyboardInterrupt:
        stopped("aborted", f"aborted at step {loop.step}")
        raise
    except Exception as error:
        if isinstance(error, OSError) and no_space_left(error, run_dir.path):
            finished = stopped("failed", f"no space left on device writing {error.filename or run_dir}; "
                                         f"stopped at step {loop.step}")
            return RunResult(recipe, run_dir.path, finished, loop.run_seconds())
        stopped("failed", f"{type(error).__name__} at step {loop.step}: {error}")
        raise
    if stop_on_error and failures() and finished.status == "interrupted":
        finished = RunFinished(finished.step, "failed", f"{failures()[0]}; {finished.message} with a checkpoint; "
                               f"resume with: gankit run --resume {run_dir}",
                               finished.values)
    if writer:
        _write_summary(prepared, run_dir, finished, loop)
    return RunResult(recipe, run_dir.path, finished, loop.run_seconds())


def _write_summary(prepared: Prepared, run_dir: RunDir, finished: RunFinished, loop: Loop) -> None:
    """``seconds``: the whole run's, each session of a resumed one counted (by the checkpoint
    it resumed from); ``session_seconds``: this session's alone."""
    data = prepared.data
    session = time.perf_counter() - loop.session_started
    write_json(run_dir.summary, {
        "name": prepared.recipe.name,
        "status": finished.status,
        "message": finished.message,
        "steps": finished.step,
        "total_steps": loop.total_steps(),
        "seconds": round(loop.seconds_before + session, 3),
        "session_seconds": round(session, 3),
        "train_seconds": {"clock": prepared.recipe.train.clock, "spent": round(loop.seconds_spent, 3)},
        "final": finished.values,
        "parameters": prepared.trainer.parameter_counts(),
        "data": {"source": data.source, "images": int(len(data.images)), "shape": list(data.spec.shape)},
        "backend": prepared.recipe.backend.name,
        "sweep": prepared.recipe.sweep,
        "init_from": prepared.source.as_dict() if prepared.source is not None else None,
        "warnings": list(dict.fromkeys(prepared.warnings)),
    })
