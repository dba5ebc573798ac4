"""``gankit sample``: rebuild a run's generator from its recipe and last checkpoint."""

from __future__ import annotations

from pathlib import Path

from gankit.backend import CheckpointError
from gankit.images import grid, write_npz, write_png
from gankit.recipe import build_recipe, read_toml
from gankit.registry import Registry
from gankit.runner import build_trainer, damaged_checkpoint, spec_of_run
from gankit.training import list_checkpoints


class SampleError(Exception):
    pass


def sample_run(registry: Registry, run_dir: Path, count: int, seed: int, output: Path) -> Path:
    """Write ``count`` samples from the run's last checkpoint to ``output`` (.png or .npz);
    returns the checkpoint used."""
    recipe_path = run_dir / "recipe.toml"
    recipe = build_recipe(read_toml(recipe_path), recipe_path, registry)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise SampleError(f"{run_dir}: no checkpoint yet; train the run first")
    trainer = build_trainer(recipe, spec_of_run(run_dir))
    try:
        trainer.load(checkpoints[-1], generator_only=True)
    except CheckpointError as error:
        raise SampleError(damaged_checkpoint(error, checkpoints)) from None
    images = trainer.generate(count, seed)
    if output.suffix.lower() == ".npz":
        write_npz(output, images)
    else:
        write_png(output, grid(images))
    return checkpoints[-1]
