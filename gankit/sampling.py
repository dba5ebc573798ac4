"""Drawing from the generator of one of a run's checkpoints: ``gankit sample`` writes the
samples, ``gankit evaluate`` scores them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from gankit import __version__
from gankit.backend import trainer_classes
from gankit.data import even_labels
from gankit.eval_config import EvalConfig
from gankit.scoring import Evaluator, Progress, floor_record, resolve_plan, update_record
from gankit.images import grid, write_npz, write_png
from gankit.latents import truncate
from gankit.noise import sample_noise, seed_noise
from gankit.registry import Registry
from gankit.rundir import RunDir, read_meta
from gankit.runner import RunError, load_generator


@dataclass(frozen=True)
class Latents:
    """Where ``gankit sample`` takes its noise from: ``count`` vectors of ``seed``'s noise
    (the default), one per seed of ``seeds``, or the ``latents`` of an .npz (``latent_file``:
    what ``gankit sample -o X.npz`` wrote, or ``gankit project``), scaled by ``truncation``."""

    count: int = 64
    seed: int = 0
    seeds: list[int] | None = None
    latent_file: Path | None = None
    truncation: float = 1.0

    @property
    def by_name(self) -> bool:
        """Each vector stands for itself (a seed's, a file's): a conditional run draws each
        once per class, not the classes evenly over the vectors."""
        return self.seeds is not None or self.latent_file is not None


def sample_run(registry: Registry, run_dir: Path, latents: Latents, output: Path, checkpoint: str | None = None,
               *, raw: bool = False, classes: tuple[str, ...] = ()) -> tuple[Path, int]:
    """Write samples from one of the run's checkpoints (``best``, ``step_00000500``, a path;
    the last by default) to ``output`` (.png or .npz): from the EMA generator when the run
    keeps one, unless ``raw``. A conditional run draws ``classes`` (names or indices), or
    every class: ``latents.count`` vectors share out the classes evenly, in class order;
    seeds' and a file's vectors are each drawn once per class (one row per class, one
    column per vector; a file's own ``labels`` when no class is asked for). Returns the
    checkpoint used and the number of images."""
    import numpy as np

    spec = RunDir(run_dir).spec()
    if classes and not spec.classes:
        raise RunError(f"--class: {run_dir} is not a conditional run (its data has no classes)")
    _, trainer, checkpoint = load_generator(registry, run_dir, checkpoint)
    conditional = bool(trainer_classes(trainer))
    if classes and not conditional:
        raise RunError(f"--class: {run_dir} is not a conditional run (its architecture has no classes)")
    noise, file_labels = _noise(trainer, latents)
    labels, columns = None, None
    if conditional and file_labels is not None and not classes:
        labels = file_labels
    elif conditional:
        try:
            chosen = np.array([spec.class_index(name) for name in classes] or range(spec.classes), np.int64)
        except ValueError as error:
            raise RunError(f"--class: {error}") from None
        if latents.by_name:
            labels, noise = np.repeat(chosen, len(noise)), np.tile(noise, (len(chosen), 1))
            columns = len(noise) // len(chosen) if len(chosen) > 1 else None
        else:
            labels = chosen[even_labels(len(chosen), len(noise))]
            columns = len(noise) // len(chosen) if len(chosen) > 1 and len(noise) % len(chosen) == 0 else None
    noise = truncate(noise, latents.truncation)
    by_class = {"labels": labels} if labels is not None else {}
    if latents.by_name or latents.truncation != 1:
        images = draw(trainer, noise, raw=raw, labels=labels)
    else:
        images = trainer.generate(len(noise), latents.seed, raw=raw, **by_class)
    if output.suffix.lower() == ".npz":
        named = ({"seeds": np.tile(np.array(latents.seeds, np.int64), len(images) // len(latents.seeds))}
                 if latents.seeds is not None else {})
        write_npz(output, images, latents=noise, truncation=np.float64(latents.truncation), **named, **by_class)
    else:
        write_png(output, grid(images, columns))
    return checkpoint, len(images)


def draw(trainer, noise, *, raw: bool = False, labels=None):
    """The trainer's images of these noise vectors, or a one-line error for a backend that
    cannot draw from given noise."""
    if not callable(getattr(trainer, "generate_from_noise", None)):
        raise RunError(f"{type(trainer).__name__} cannot draw from given noise (seeds, truncation, a latent file): "
                       "its backend has no generate_from_noise; leave those options out")
    return trainer.generate_from_noise(noise, raw=raw, labels=labels)


def _noise(trainer, latents: Latents):
    """The vectors ``latents`` names, float32 (N, latent size), and a latent file's labels."""
    import numpy as np

    if latents.latent_file is None:
        if latents.seeds is not None:
            return seed_noise(latents.seeds, trainer.latent_dim), None
        return sample_noise(latents.seed, latents.count, trainer.latent_dim), None
    path = latents.latent_file
    try:
        with np.load(path, allow_pickle=False) as saved:
            if "latents" not in saved:
                raise RunError(f"--latent {path}: it holds no 'latents' array (it has {', '.join(saved.files) or 'none'}); "
                               "use an .npz written by gankit sample or gankit project")
            noise, labels = saved["latents"], saved["labels"] if "labels" in saved else None
    except (OSError, ValueError) as error:
        raise RunError(f"--latent {path}: not a readable .npz ({error})") from None
    if noise.ndim != 2 or noise.shape[1] != trainer.latent_dim or not len(noise):
        raise RunError(f"--latent {path}: its latents are {tuple(noise.shape)}, and this run's generator takes "
                       f"(N, {trainer.latent_dim}); use latents written for a run of the same architecture")
    if labels is not None and labels.shape != (len(noise),):
        labels = None
    return noise.astype(np.float32), labels


def evaluate_run(registry: Registry, run_dir: Path, config: EvalConfig, *, checkpoint: str | None = None,
                 raw: bool = False, cache_dir: Path | None = None,
                 info: Callable[[str], None] = print, warn: Callable[[str], None] = print,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Score a run's checkpoint (its EMA generator when it keeps one, unless ``raw``) and
    record how in ``run_dir/eval.json``, which keeps the latest evaluation with each feature
    extractor. Returns the record."""
    started = time.perf_counter()
    run = RunDir(run_dir)
    recipe, trainer, checkpoint_dir = load_generator(registry, run_dir, checkpoint)
    step = read_meta(checkpoint_dir).get("step")
    plan = resolve_plan(config, registry)
    config = plan.config
    evaluator = Evaluator(plan, recipe, cache_dir=cache_dir, info=info, warn=warn, progress=progress)
    scores, accuracy = evaluator.score_generator(trainer, raw=raw, names=run.spec().class_names)
    if trainer_classes(trainer) and accuracy is None:
        warn(f"no class accuracy: the {config.extractor_name!r} features do not classify the run's classes; "
             "use --features with an extractor trained on the run's own classes")
    record = {
        "gankit_version": __version__,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scores": scores,
        **floor_record(evaluator, scores),
        "checkpoint": {"path": str(checkpoint_dir), "step": step},
        "generated": {"count": config.n, "seed": config.seed, "backend": recipe.backend.name,
                      "generator": "raw" if raw or recipe.train.ema is None else "ema"},
        **evaluator.describe(),
        **({"class_accuracy": accuracy} if accuracy is not None else {}),
        "seconds": round(time.perf_counter() - started, 3),
    }
    try:
        update_record(run.eval, ("evaluations", config.extractor_name), record)
    except OSError as error:
        raise UnsavedScores(record, f"cannot write {run.eval} ({error.strerror or error}): the scores above "
                                    "were computed but not saved") from None
    return record


class UnsavedScores(RunError):
    """An evaluation whose scores could not be recorded in eval.json: ``record`` holds them."""

    def __init__(self, record: dict[str, Any], message: str):
        super().__init__(message)
        self.record = record


def write_stats(registry, recipe, config, output: Path, **evaluator_options) -> dict[str, Any]:
    """``gankit stats``: the reference of ``config``'s split, count and seed of ``recipe``'s
    dataset, with ``config``'s extractor, written to ``output``. Returns its metadata."""
    from dataclasses import replace

    from gankit.reference import write_reference

    plan = replace(resolve_plan(config, registry), metrics={}, metric_params={})
    evaluator = Evaluator(plan, recipe, **evaluator_options)
    data = evaluator.load(config.split)
    reference = evaluator.make_reference(data, min(config.n, len(data.images)))
    write_reference(output, reference)
    return reference.meta
