"""Drawing from the generator of one of a run's checkpoints: ``gankit sample`` writes the
samples, ``gankit evaluate`` scores them."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from gankit import __version__
from gankit.eval_config import EvalConfig
from gankit.evaluation import Evaluator, Progress, resolve_plan, update_record
from gankit.images import grid, write_npz, write_png
from gankit.registry import Registry
from gankit.rundir import RunDir, read_meta
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


def evaluate_run(registry: Registry, run_dir: Path, config: EvalConfig, *, checkpoint: str | None = None,
                 raw: bool = False, extractor_params: dict[str, Any] | None = None, cache_dir: Path | None = None,
                 info: Callable[[str], None] = print, warn: Callable[[str], None] = print,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Score a run's checkpoint (its EMA generator when it keeps one, unless ``raw``) and
    record how in ``run_dir/eval.json``, which keeps the latest evaluation with each feature
    extractor. Returns the record."""
    started = time.perf_counter()
    recipe, trainer, checkpoint_dir = load_generator(registry, run_dir, checkpoint)
    step = read_meta(checkpoint_dir).get("step")
    evaluator = Evaluator(resolve_plan(config, registry), recipe, cache_dir=cache_dir,
                          extractor_params=extractor_params, info=info, warn=warn, progress=progress)
    scores = evaluator.score(trainer.generate(config.n, config.seed, raw=raw))
    record = {
        "gankit_version": __version__,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scores": scores,
        "checkpoint": {"path": str(checkpoint_dir), "step": step},
        "generated": {"count": config.n, "seed": config.seed, "backend": recipe.backend.name,
                      "generator": "raw" if raw or recipe.train.ema is None else "ema"},
        **evaluator.describe(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    update_record(RunDir(run_dir).eval, ("evaluations", config.features), record)
    return record
