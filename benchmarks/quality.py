"""Judge recipe changes by numbers: the domain FID of each shipped MNIST and Fashion-MNIST
recipe after a fixed training budget, beside the real-vs-real floor of its data.

Each recipe is trained for ``--steps`` generator updates, or with ``--cpu-seconds S`` for
as many as S seconds of this process's CPU time allow (a fixed budget whatever a step of
the recipe costs, and fair on a busy machine), with its own architecture, loss, optimizer
and batch size (its length, checkpoints and exports overridden), in a scratch directory, then its last checkpoint is scored exactly as ``gankit evaluate --metric fid
--features domain -n N`` would: N generated images against N real train images.

The floor is the FID between two disjoint sets of N real images, the best a generator
could hope for at this N: the test split against the train subset the runs are scored
against. Where the two splits hold the same images (MNIST offline, where the train split
falls back to the 10,000 shipped test images), the other set is instead the train images
outside that subset, so N should be at most half the data. Prints a table; asserts
nothing.

    python benchmarks/quality.py [--steps 1000 | --cpu-seconds 300] [-n 5000] [RECIPE ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gankit.data import DataContext, default_cache_dir
from gankit.eval_config import EvalConfig
from gankit.evaluation import EvalError, Evaluator, data_sha256, evaluate_run, real_subset, resolve_plan
from gankit.plugins import load_registry
from gankit.recipe import RecipeError, load_recipe
from gankit.runner import RunError, run

DATASETS = ("mnist", "fashion-mnist")
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def floor(evaluator: Evaluator, n: int, seed: int) -> tuple[float, str]:
    """The FID of real images against the real train subset, and which images they were."""
    train, test = evaluator.load("train"), evaluator.load("test")
    chosen = real_subset(len(train.images), n, seed)
    if data_sha256(test) != data_sha256(train):
        other = test.images[real_subset(len(test.images), n, seed)]
        what = f"{len(other):,} test vs {len(chosen):,} train images"
    else:
        other = train.images[np.setdiff1d(np.arange(len(train.images)), chosen)[:n]]
        what = f"{len(other):,} vs {len(chosen):,} disjoint train images (test split = train split here)"
    return evaluator.score(other)["fid"], what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", type=Path, help="default: every shipped MNIST/Fashion-MNIST recipe")
    parser.add_argument("--steps", type=int, default=1000, help="generator updates per recipe")
    parser.add_argument("--cpu-seconds", type=float, help="instead: train each recipe for this much CPU time")
    parser.add_argument("-n", type=int, default=5000, help="generated and real images scored")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    registry = load_registry()
    cache = default_cache_dir()
    warned: set[str] = set()

    def warn(message: str) -> None:
        if message not in warned:
            warned.add(message)
            print(f"warning: {message}", file=sys.stderr)

    context = DataContext(cache, warn=warn)
    config = EvalConfig(metrics=["fid"], features="domain", n=args.n, seed=args.seed)
    steps = 10**9 if args.cpu_seconds else args.steps
    overrides = [f"train.steps={steps}", "train.checkpoint_every=0", "export=[]"]
    floors: dict[str, tuple[str, float, str]] = {}
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="gankit-quality-") as scratch:
        for path in args.recipes or sorted(RECIPES.rglob("*.toml")):
            try:
                recipe = load_recipe(path, overrides, registry)
            except RecipeError as error:
                rows.append((str(path), "-", "-", f"skipped: {error}"))
                continue
            if recipe.dataset.name not in DATASETS:
                continue
            try:
                data_key = str(recipe.dataset.as_table())
                if data_key not in floors:
                    evaluator = Evaluator(resolve_plan(config, registry), recipe, cache_dir=cache, warn=warn)
                    floors[data_key] = (recipe.dataset.name, *floor(evaluator, args.n, args.seed))
                started, cpu_end = time.perf_counter(), time.process_time() + (args.cpu_seconds or float("inf"))
                result = run(recipe, runs_root=Path(scratch), context=context,
                             should_stop=lambda: time.process_time() >= cpu_end)
                seconds = time.perf_counter() - started
                fid = evaluate_run(registry, result.run_dir, config, cache_dir=cache, warn=warn)["scores"]["fid"]
            except (RunError, EvalError) as error:
                rows.append((str(path), recipe.dataset.name, "-", f"skipped: {error}"))
                continue
            rows.append((str(path.relative_to(RECIPES.parent) if path.is_relative_to(RECIPES.parent) else path),
                         recipe.dataset.name, f"{fid:.2f}",
                         f"{result.finished.step} steps, {seconds:.0f}s of training ({result.finished.status})"))

    budget = f"{args.cpu_seconds:.0f} CPU seconds of training" if args.cpu_seconds else f"{args.steps} steps"
    print(f"\ndomain FID after {budget}, {args.n:,} generated vs {args.n:,} real train images "
          f"(seed {args.seed}; lower is better)\n")
    table = [("recipe", "dataset", "FID", "notes")]
    table += [("real vs real (floor)", name, f"{fid:.2f}", what) for name, fid, what in floors.values()]
    table += rows
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])


if __name__ == "__main__":
    main()
