"""``gankit sample``: draw from the generator of one of a run's checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gankit.data import even_labels
from gankit.images import grid, write_npz, write_png
from gankit.registry import Registry
from gankit.runner import RunError, load_generator, spec_of_run, trainer_classes


def sample_run(registry: Registry, run_dir: Path, count: int, seed: int, output: Path,
               checkpoint: str | None = None, *, raw: bool = False, classes: tuple[str, ...] = ()) -> Path:
    """Write ``count`` samples from one of the run's checkpoints (``best``, ``step_00000500``,
    a path; the last by default) to ``output`` (.png or .npz): from the EMA generator when the
    run keeps one, unless ``raw``. A conditional run draws ``classes`` (names or indices),
    or every class, evenly and in class order: a grid has one row per class when ``count``
    divides by their number. Returns the checkpoint used."""
    spec = spec_of_run(run_dir)
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
        columns = count // len(chosen) if count % len(chosen) == 0 else None
    elif classes:
        raise RunError(f"--class: {run_dir} is not a conditional run (set architecture.conditional = true)")
    images = trainer.generate(count, seed, raw=raw, **({"labels": labels} if labels is not None else {}))
    if output.suffix.lower() == ".npz":
        write_npz(output, images) if labels is None else write_npz(output, images, labels=labels)
    else:
        write_png(output, grid(images, columns))
    return checkpoint
