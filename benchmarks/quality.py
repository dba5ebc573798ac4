"""Judge recipe changes by numbers: the domain FID, precision, recall, density and coverage
of each shipped MNIST and Fashion-MNIST recipe after a fixed training budget, beside the
real-vs-real floor of its data; its
readable share (the share of generated images the domain classifier gives one class with
probability at least 0.9, beside the same share of held-out real images, its ceiling) and
the share of its rarest class; and for conditional recipes (cgan_mnist) the class accuracy: how often the domain classifier
assigns a generated image the class it was drawn for (the N images cover every class
evenly).

Each recipe is trained for ``--steps`` generator updates, or with ``--cpu-seconds S`` for as
many as S seconds of its process's CPU time allow (a fixed budget whatever a step of the
recipe costs, and fair on a busy machine) (its own architecture, loss,
optimizer and batch size; its length, checkpoints and exports overridden) in a scratch
directory, then its last checkpoint is scored exactly as ``gankit evaluate --metric fid
--metric precision,recall,density,coverage --metric readable --features domain -n N``
would: N generated images against N real train images.

The floor is the FID between two disjoint sets of N real images, the best a generator
could hope for at this N: the test split against the train subset the runs are scored
against. Where the two splits hold the same images (MNIST offline, where the train split
falls back to the 10,000 shipped test images), the other set is instead the train images
outside that subset, so N should be at most half the data. Prints a table; asserts
nothing.

``--backends`` and ``--seeds`` train each recipe on each backend with each seed (the
recipe's ``seed``, which sets the initial weights, noise and data order) and print each
FID with the mean and standard deviation over the seeds: the way to tell whether two
backends learn alike, as one run of a GAN is not enough to judge (class accuracy likewise). Each run trains and is
scored in a process of its own, so that TensorFlow's process-wide settings (and its
clash with torch's compiler stack when TensorFlow is imported first) stay in that run.

    python benchmarks/quality.py [--steps 1000 | --cpu-seconds 300] [-n 5000] [RECIPE ...]
    python benchmarks/quality.py recipes/dcgan_mnist.toml --steps 780 -n 2000 \
        --backends torch,tensorflow --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gankit.data import DataContext, default_cache_dir
from gankit.eval_config import EvalConfig
from gankit.evaluation import EvalError, data_sha256
from gankit.scoring import Evaluator, real_subset, resolve_plan
from gankit.plugins import load_registry
from gankit.recipe import RecipeError, load_recipe
from gankit.runner import RunError, run
from gankit.sampling import evaluate_run

DATASETS = ("mnist", "fashion-mnist")
MANIFOLD = ("precision", "recall", "density", "coverage")
COLUMNS = {"fid": ("FID", "{:.2f}"), **{name: (name, "{:.2f}") for name in MANIFOLD}, "readable": ("readable", "{:.1%}"),
           "rarest_class_share": ("rarest class", "{:.1%}"), "class_accuracy": ("class acc", "{:.1%}")}
"""What a run is scored on (class accuracy only for conditional runs): each score's column
heading and how its values are shown."""
SCORES = {key: shown for key, (_, shown) in COLUMNS.items()}
HEADERS = tuple(heading for heading, _ in COLUMNS.values())
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def floor(evaluator: Evaluator, n: int, seed: int) -> tuple[dict[str, float], str]:
    """The scores of real images against the real train subset (FID's floor, the readable
    share's ceiling), and which images they were."""
    train, test = evaluator.load("train"), evaluator.load("test")
    chosen = real_subset(len(train.images), n, seed)
    if data_sha256(test) != data_sha256(train):
        other = test.images[real_subset(len(test.images), n, seed)]
        what = f"{len(other):,} test vs {len(chosen):,} train images"
    else:
        other = train.images[np.setdiff1d(np.arange(len(train.images)), chosen)[:n]]
        what = f"{len(other):,} vs {len(chosen):,} disjoint train images (test split = train split here)"
    return evaluator.score(other), what


def train_and_score(path: Path, overrides: list[str], scratch: str, config: EvalConfig,
                    cpu_seconds: float | None = None) -> tuple[dict[str, float], str, float]:
    """Train one recipe (for at most ``cpu_seconds`` of CPU time) and score its last
    checkpoint: (its scores, steps and run status, seconds of training)."""
    registry, cache = load_registry(), default_cache_dir()
    recipe = load_recipe(path, overrides, registry)
    context = DataContext(cache, warn=lambda message: None)
    started = time.perf_counter()
    cpu_end = time.process_time() + (cpu_seconds or float("inf"))
    result = run(recipe, runs_root=Path(scratch), context=context, should_stop=lambda: time.process_time() >= cpu_end)
    seconds = time.perf_counter() - started
    record = evaluate_run(registry, result.run_dir, config, cache_dir=cache, info=lambda message: None,
                          warn=lambda message: None)
    scores = {key: record["scores"][key] for key in SCORES if key in record["scores"]}
    return scores, f"{result.finished.step} steps, {result.finished.status}", seconds


def in_own_process(path: Path, overrides: list[str], scratch: str, config: EvalConfig,
                   cpu_seconds: float | None) -> tuple[dict[str, float], str, float]:
    """``train_and_score`` in a fresh interpreter running this script."""
    job = json.dumps({"path": str(path), "overrides": overrides, "scratch": scratch, "config": config.model_dump(),
                      "cpu_seconds": cpu_seconds})
    done = subprocess.run([sys.executable, __file__, "--one-run", job], stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise RunError(f"the run exited with status {done.returncode}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in answer:
        raise RunError(answer["error"])
    return answer["scores"], answer["status"], answer["seconds"]


def one_run(job: str) -> None:
    """The child's side of ``in_own_process``: one JSON line on stdout."""
    job = json.loads(job)
    try:
        scores, status, seconds = train_and_score(Path(job["path"]), job["overrides"], job["scratch"],
                                                  EvalConfig.model_validate(job["config"]), job["cpu_seconds"])
        print(json.dumps({"scores": scores, "status": status, "seconds": seconds}))
    except (RecipeError, RunError, EvalError) as error:
        print(json.dumps({"error": str(error)}))


def comma_list(kind):
    return lambda text: [kind(item) for item in text.split(",") if item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", type=Path, help="default: every shipped MNIST/Fashion-MNIST recipe")
    parser.add_argument("--steps", type=int, default=1000, help="generator updates per recipe")
    parser.add_argument("--cpu-seconds", type=float, help="instead: train each run for this much CPU time")
    parser.add_argument("-n", type=int, default=5000, help="generated and real images scored")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scored noise and real subset")
    parser.add_argument("--backends", type=comma_list(str), default=None,
                        help="comma-separated backends to train each recipe on (default: the recipe's own)")
    parser.add_argument("--seeds", type=comma_list(int), default=None,
                        help="comma-separated recipe seeds to train with (default: the recipe's own)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key in every run, as gankit run --set does (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (each in its own process)")
    parser.add_argument("--one-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        return one_run(args.one_run)

    registry = load_registry()
    cache = default_cache_dir()
    warned: set[str] = set()

    def warn(message: str) -> None:
        if message not in warned:
            warned.add(message)
            print(f"warning: {message}", file=sys.stderr)

    config = EvalConfig(metrics=["fid", *MANIFOLD, "readable"], features="domain", n=args.n, seed=args.seed)
    steps = 10**9 if args.cpu_seconds else args.steps
    # No recipe's own time budget: --steps or --cpu-seconds decide.
    overrides = [f"train.steps={steps}", "train.max_seconds=1e9", "train.checkpoint_every=0", "export=[]", *args.sets]
    variants = [(backend, seed) for seed in (args.seeds or [None]) for backend in (args.backends or [None])]
    floors: dict[str, tuple[str, dict[str, float], str]] = {}
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="gankit-quality-") as scratch:
        for path in args.recipes or sorted(RECIPES.rglob("*.toml")):
            inside = path.resolve().is_relative_to(RECIPES.parent)
            shown = str(path.resolve().relative_to(RECIPES.parent) if inside else path)
            try:
                recipe = load_recipe(path, overrides, registry)
            except RecipeError as error:
                rows.append((shown, "-", "-", *("-" for _ in HEADERS), f"skipped: {error}"))
                continue
            if recipe.dataset.name not in DATASETS:
                continue
            try:
                data_key = str(recipe.dataset.as_table())
                if data_key not in floors:  # also trains and caches the domain classifier, once
                    evaluator = Evaluator(resolve_plan(config, registry), recipe, cache_dir=cache, warn=warn)
                    floors[data_key] = (recipe.dataset.name, *floor(evaluator, args.n, args.seed))
            except EvalError as error:
                rows.append((shown, recipe.dataset.name, "-", *("-" for _ in HEADERS), f"skipped: {error}"))
                continue
            def variant(backend, seed, recipe=recipe, path=path, shown=shown):
                chosen = [*overrides, *([f"backend.use={backend}"] if backend else []),
                          *([f"seed={seed}"] if seed is not None else [])]
                name = f"{backend or recipe.backend.name}, seed {recipe.seed if seed is None else seed}"
                try:
                    scores, status, seconds = in_own_process(path, chosen, tempfile.mkdtemp(dir=scratch), config,
                                                          args.cpu_seconds)
                except RunError as error:
                    print(f"{shown} on {name}: {error}", file=sys.stderr, flush=True)
                    return f"skipped: {error}", ""
                shown_scores = ", ".join(f"{key} {SCORES[key].format(value)}" for key, value in scores.items())
                print(f"{shown} on {name}: {shown_scores} ({status}, {seconds:.0f}s of training)",
                      file=sys.stderr, flush=True)
                return scores, status

            with ThreadPoolExecutor(args.jobs) as pool:
                found_all = list(pool.map(lambda chosen: variant(*chosen), variants))
            by_backend: dict[str, list] = {}
            for (backend, _), found in zip(variants, found_all):
                by_backend.setdefault(backend or recipe.backend.name, []).append(found)
            for name, found in by_backend.items():
                rows.append((shown, recipe.dataset.name, name, *summary(found)))

    seeds = ", ".join(map(str, args.seeds)) if args.seeds else "each recipe's own"
    budget = f"{args.cpu_seconds:.0f} CPU seconds of training" if args.cpu_seconds else f"{args.steps} steps"
    print(f"\ndomain FID, precision, recall, density, coverage, readable share and class accuracy after {budget}, "
          f"{args.n:,} generated vs {args.n:,} real train images (recipe seeds: {seeds}; scoring seed {args.seed}; "
          f"FID: lower is better; precision/recall (k = 3), density/coverage (k = 5): higher is better; a run that "
          f"misses modes shows a low recall and coverage; readable: the share "
          f"the domain classifier gives one class with probability >= 0.9, higher is better, the real row its "
          f"ceiling; rarest class: the share of the generated images in the class they fall in least; "
          f"class accuracy: conditional runs, higher)\n")
    table = [("recipe", "dataset", "backend", *HEADERS, "notes")]
    table += [("real vs real (floor)", name, "-", *(SCORES[key].format(real[key]) if key in real else "-" for key in SCORES),
               what) for name, real, what in floors.values()]
    table += rows
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


def summary(found: list[tuple[dict[str, float] | str, str]]) -> tuple[str, ...]:
    """One column per score (a mean ± sd over seeds where there are several; "-" for a
    score the runs lack) and the notes column: the skipped runs, how far each run got (the
    steps matter under a CPU budget) and, with several seeds, each seed's figures."""
    scored = [(item, status) for item, status in found if isinstance(item, dict)]
    columns = []
    for key, shown in SCORES.items():
        values = [item[key] for item, _ in scored if key in item]
        if not values:
            columns.append("-")
        elif len(values) == 1:
            columns.append(shown.format(values[0]))
        else:
            spread = f" ± {shown.format(statistics.stdev(values))}"
            columns.append(f"{shown.format(statistics.mean(values))}{spread}")
    notes = [item for item, _ in found if isinstance(item, str)]
    if len(found) == 1 and scored:
        notes.append(scored[0][1])
    elif scored:
        notes.append("seeds: " + "; ".join(
            " ".join(SCORES[key].format(value) for key, value in item.items()) + f" ({status.split(',')[0]})"
            for item, status in scored))
    return (*columns, "; ".join(notes))


if __name__ == "__main__":
    main()
