"""Does augmentation rescue a GAN trained on a few hundred images? The headline DCGAN (without
its class conditioning) on the first ``--limits`` MNIST images, without augmentation, with
DiffAugment and with adaptive ADA
(each variant's settings are those of ``recipes/dcgan_mnist_500_diffaugment.toml`` and
``recipes/dcgan_mnist_500_ada.toml``), beside the whole data without augmentation.

Each run trains ``--steps`` generator updates with a checkpoint at each step of ``--at``, and
each of those checkpoints is scored: the domain FID of N generated images (the EMA generator)
against N real digits that no limited run trained on (drawn from the images after the largest
limit; the full-data run does see them), in the features of the ``domain`` classifier trained
on the whole data, as ``benchmarks/quality.py`` scores. Runs train in processes of their own,
``--jobs`` at a time. Prints a table (mean ± sd over the seeds); asserts nothing.

    python benchmarks/small_data.py --limits 500,2000,0 --seeds 0,1,2 --steps 3000 --at 1000,2000,3000 -n 2000 --jobs 2
    python benchmarks/small_data.py --limits 500 --seeds 0 --steps 40 --at 20,40 -n 200   # a quick check
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from quality import comma_list

from gankit.data import DataContext, ImageData, default_cache_dir
from gankit.eval_config import EvalConfig
from gankit.evaluation import EvalError
from gankit.scoring import Evaluator, real_subset, resolve_plan
from gankit.plugins import load_registry
from gankit.recipe import RecipeError, load_recipe
from gankit.runner import RunError, load_data, load_generator, run

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
HEADLINE = RECIPES / "dcgan_mnist.toml"
VARIANTS = {"none": (HEADLINE, ["architecture.conditional=false"]),
            "diffaugment": (RECIPES / "dcgan_mnist_500_diffaugment.toml", []),
            "ada": (RECIPES / "dcgan_mnist_500_ada.toml", [])}
"""Each variant's recipe and overrides: the headline's networks and optimizer, unconditional,
and its own augmentation."""


def evaluator_for(recipe_path: Path, held_out_from: int, n: int, seed: int, context: DataContext) -> Evaluator:
    """A scorer whose real images are n digits from index ``held_out_from`` on, and whose
    classifier learns the whole data."""
    registry = load_registry()
    whole = load_data(load_recipe(recipe_path, ["export=[]"], registry), context)
    rest = slice(held_out_from, None)
    held_out = ImageData(whole.images[rest], whole.labels[rest], f"{whole.source}, images {held_out_from}+",
                         whole.class_names)
    chosen = real_subset(len(held_out.images), n, seed)
    reference = ImageData(held_out.images[chosen], held_out.labels[chosen], held_out.source, held_out.class_names)
    config = EvalConfig(metrics=["fid"], features="domain", n=len(chosen), seed=seed, split="test")
    return Evaluator(resolve_plan(config, registry), load_recipe(recipe_path, ["export=[]"], registry),
                     cache_dir=context.cache_dir, loaded={"train": whole, "test": reference})


def train_and_score(job: dict) -> dict:
    """One run, then its checkpoint at each step of ``job["at"]`` scored."""
    context = DataContext(default_cache_dir(), warn=lambda message: None)
    registry = load_registry()
    evaluator = evaluator_for(HEADLINE, job["held_out_from"], job["n"], job["seed"], context)
    result = run(load_recipe(Path(job["path"]), job["overrides"], registry), runs_root=Path(job["scratch"]),
                 context=context)
    scores = {}
    for step in job["at"]:
        _, trainer, _ = load_generator(registry, result.run_dir, f"step_{step:08d}")
        scores[str(step)] = evaluator.score_generator(trainer)[0]["fid"]
    return {"fid": scores, "status": f"{result.finished.step} steps, {result.finished.status}"}


def in_own_process(job: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one-run", json.dumps(job)], stdout=subprocess.PIPE, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"error": f"the run exited with status {done.returncode}"}
    return json.loads(lines[-1])


def one_run(job: str) -> None:
    try:
        print(json.dumps(train_and_score(json.loads(job))))
    except (RecipeError, RunError, EvalError) as error:
        print(json.dumps({"error": str(error)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limits", type=comma_list(int), default=[500, 2000, 0],
                        help="comma-separated numbers of training images (0: all of them, without augmentation only)")
    parser.add_argument("--variants", type=comma_list(str), default=list(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--seeds", type=comma_list(int), default=[0, 1, 2], help="comma-separated recipe seeds")
    parser.add_argument("--steps", type=int, default=3000, help="generator updates per run")
    parser.add_argument("--at", type=comma_list(int), default=[1000, 2000, 3000], help="steps whose checkpoints are scored")
    parser.add_argument("-n", type=int, default=2000, help="generated and held-out real images scored")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scored noise and real subset")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time, each in its own process")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key in every run, as gankit run --set does (repeatable)")
    parser.add_argument("--held-out-from", type=int, help="first image of the held-out real digits (default: the "
                        "largest limit; give the same number to runs of the grid made in separate calls)")
    parser.add_argument("--one-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        return one_run(args.one_run)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or any(step > args.steps for step in args.at):
        sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}" if unknown
                 else "--at names a step after --steps")

    held_out_from = args.held_out_from or max(args.limits)
    if held_out_from < max(args.limits):
        sys.exit(f"--held-out-from {held_out_from} is inside the largest limit {max(args.limits)}: "
                 "the held-out digits must be unseen")
    grid = [(limit, variant) for limit in args.limits for variant in args.variants if limit or variant == "none"]
    with tempfile.TemporaryDirectory(prefix="gankit-small-data-") as scratch:
        evaluator = evaluator_for(HEADLINE, held_out_from, args.n, args.seed,
                                  DataContext(default_cache_dir(), warn=lambda message: None))
        floor = evaluator.score(evaluator.load("train").images[:args.n])["fid"]
        jobs = []
        for seed in args.seeds:  # every variant of a seed before the next seed
            for limit, variant in grid:
                path, own = VARIANTS[variant]
                overrides = [*own, "export=[]", f"seed={seed}", f"train.steps={args.steps}", "train.max_seconds=1e9",
                             "dataset.limit=" + str(limit or 10**9),
                             f"train.checkpoint_every={min(args.at)}", f"train.keep_checkpoints={args.steps}", *args.sets]
                jobs.append(((limit, variant, seed), {"path": str(path), "overrides": overrides,
                                                      "scratch": tempfile.mkdtemp(dir=scratch), "at": args.at,
                                                      "n": args.n, "seed": args.seed, "held_out_from": held_out_from}))

        def one(item):
            (limit, variant, seed), job = item
            answer = in_own_process(job)
            shown = answer.get("error") or " ".join(f"{step}: {fid:.2f}" for step, fid in answer["fid"].items())
            print(f"{limit or 'all'} images, {variant}, seed {seed}: {shown}", file=sys.stderr, flush=True)
            return answer

        with ThreadPoolExecutor(args.jobs) as pool:
            answers = list(pool.map(one, jobs))

    print(f"\ndomain FID (lower is better) of {args.n:,} generated images against {args.n:,} real digits that no "
          f"limited run trained on (from image {held_out_from:,} on), at each step; mean ± sd over seeds "
          f"{', '.join(map(str, args.seeds))}; real vs real floor {floor:.2f}\n")
    table = [("images", "augmentation", *(f"step {step}" for step in args.at), "notes")]
    for limit, variant in grid:
        found = [answer for (key, _), answer in zip(jobs, answers) if key[:2] == (limit, variant)]
        scored = [answer["fid"] for answer in found if "fid" in answer]
        cells = []
        for step in args.at:
            values = [fids[str(step)] for fids in scored]
            cells.append("-" if not values else f"{statistics.mean(values):.2f}" + (
                f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""))
        notes = "; ".join(answer.get("error", answer.get("status", "")) for answer in found)
        table.append((f"{limit:,}" if limit else "all", variant, *cells, notes))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


if __name__ == "__main__":
    main()
