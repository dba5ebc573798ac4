"""Drawing from the generator of one of a run's checkpoints: ``gankit sample`` writes the
samples, ``gankit evaluate`` scores them."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from gankit import __version__
from gankit.backend import trainer_classes
from gankit.data import even_labels
from gankit.eval_config import EvalConfig
from gankit.evaluation import Evaluator, Progress, resolve_plan, update_record
from gankit.images import grid, write_npz, write_png
from gankit.registry import Registry
from gankit.rundir import RunDir, read_meta
from gankit.runner import RunError, load_generator


def sample_run(registry: Registry, run_dir: Path, count: int, seed: int, output: Path,
               checkpoint: str | None = None, *, raw: bool = False, classes: tuple[str, ...] = ()) -> Path:
    """Write ``count`` samples from one of the run's checkpoints (``best``, ``step_00000500``,
    a path; the last by default) to ``output`` (.png or .npz): from the EMA generator when the
    run keeps one, unless ``raw``. A conditional run draws ``classes`` (names or indices),
    or every class, evenly and in class order: a grid of several classes has one row per
    class when ``count`` divides by their number (one class: a square grid). Returns the
    checkpoint used."""
    import numpy as np

    spec = RunDir(run_dir).spec()
    if classes and not spec.classes:
        raise RunError(f"--class: {run_dir} is not a conditional run (its data has no classes)")
    _, trainer, checkpoint = load_generator(registry, run_dir, checkpoint)
    labels, columns = None, None
    if trainer_classes(trainer):
        try:
            chosen = np.array([spec.class_index(name) for name in classes] or range(spec.classes), np.int64)
        except ValueError as error:
            raise RunError(f"--class: {error}") from None
        labels = chosen[even_labels(len(chosen), count)]
        columns = count // len(chosen) if len(chosen) > 1 and count % len(chosen) == 0 else None
    elif classes:
        raise RunError(f"--class: {run_dir} is not a conditional run (set architecture.conditional = true)")
    by_class = {"labels": labels} if labels is not None else {}
    images = trainer.generate(count, seed, raw=raw, **by_class)
    if output.suffix.lower() == ".npz":
        write_npz(output, images, **by_class)
    else:
        write_png(output, grid(images, columns))
    return checkpoint


def evaluate_run(registry: Registry, run_dir: Path, config: EvalConfig, *, checkpoint: str | None = None,
                 raw: bool = False, extractor_params: dict[str, Any] | None = None, cache_dir: Path | None = None,
                 info: Callable[[str], None] = print, warn: Callable[[str], None] = print,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Score a run's checkpoint (its EMA generator when it keeps one, unless ``raw``) and
    record how in ``run_dir/eval.json``, which keeps the latest evaluation with each feature
    extractor. Returns the record."""
    started = time.perf_counter()
    run = RunDir(run_dir)
    recipe, trainer, checkpoint_dir = load_generator(registry, run_dir, checkpoint)
    step = read_meta(checkpoint_dir).get("step")
    evaluator = Evaluator(resolve_plan(config, registry), recipe, cache_dir=cache_dir,
                          extractor_params=extractor_params, info=info, warn=warn, progress=progress)
    scores, accuracy = evaluator.score_generator(trainer, raw=raw, names=run.spec().class_names)
    if trainer_classes(trainer) and accuracy is None:
        warn(f"no class accuracy: the {config.features!r} features do not classify the run's classes; use --features domain")
    record = {
        "gankit_version": __version__,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scores": scores,
        "checkpoint": {"path": str(checkpoint_dir), "step": step},
        "generated": {"count": config.n, "seed": config.seed, "backend": recipe.backend.name,
                      "generator": "raw" if raw or recipe.train.ema is None else "ema"},
        **evaluator.describe(),
        **({"class_accuracy": accuracy} if accuracy is not None else {}),
        "seconds": round(time.perf_counter() - started, 3),
    }
    try:
        update_record(run.eval, ("evaluations", config.features), record)
    except OSError as error:
        raise UnsavedScores(record, f"cannot write {run.eval} ({error.strerror or error}): the scores above "
                                    "were computed but not saved") from None
    return record


class UnsavedScores(RunError):
    """An evaluation whose scores could not be recorded in eval.json: ``record`` holds them."""

    def __init__(self, record: dict[str, Any], message: str):
        super().__init__(message)
        self.record = record
