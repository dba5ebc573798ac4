"""``gankit sample``: draw from the generator of one of a run's checkpoints."""

from __future__ import annotations

from pathlib import Path

from gankit.images import grid, write_npz, write_png
from gankit.registry import Registry
from gankit.runner import load_generator


def sample_run(registry: Registry, run_dir: Path, count: int, seed: int, output: Path,
               checkpoint: str | None = None, *, raw: bool = False) -> Path:
    """Write ``count`` samples from one of the run's checkpoints (``best``, ``step_00000500``,
    a path; the last by default) to ``output`` (.png or .npz): from the EMA generator when the
    run keeps one, unless ``raw``. Returns the checkpoint used."""
    _, trainer, checkpoint = load_generator(registry, run_dir, checkpoint)
    images = trainer.generate(count, seed, raw=raw)
    if output.suffix.lower() == ".npz":
        write_npz(output, images)
    else:
        write_png(output, grid(images))
    return checkpoint
