"""Does a GAN trained on other images help one that has only a few hundred? Fine-tuning
(``train.init_from``) and FreezeD (``train.freeze_d``) against training from scratch, on
Fashion-MNIST.

The headline DCGAN (``recipes/dcgan_mnist.toml``'s settings, on ``fashion-mnist``, without
its class conditioning and sized in steps: 5 epochs) is trained on nine classes (or for
``--pretrain-steps``). Then each
variant trains ``--steps`` generator updates on the first ``--images`` training images of
the tenth class (``--target``): from scratch, fine-tuned from the nine-class run, and
fine-tuned with D's first k weight layers frozen (each k of ``--freeze``), once per seed
of ``--seeds``.

Each is scored by the domain FID of the tenth class: N generated images (the EMA
generator) against the tenth class's test images (1,000 in Fashion-MNIST; as many as N),
in the features of the ``domain`` classifier trained on all ten classes of the training
split, the one ``benchmarks/quality.py`` scores Fashion-MNIST recipes with. The floor is
the FID of N other training images of the tenth class (after the ``--images`` the
variants train on) against the same test images. Prints a table; asserts nothing.

The full measurement (a little over an hour on a 2-core CPU with one thread: the
nine-class run is 4,215 steps, each few-image run 780; the Fashion-MNIST files from Debian's
``dataset-fashion-mnist`` package):

    python benchmarks/transfer.py --steps 780 --images 200 -n 1000 --seeds 0,1,2 --freeze 1,2 \
        --set backend.threads=1 --set dataset.root=/usr/share/datasets/fashion-mnist

A quick check that it works (a minute or two):

    python benchmarks/transfer.py --pretrain-steps 20 --steps 20 -n 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from quality import SCORES, comma_list, summary

from gankit.data import DataContext, default_cache_dir
from gankit.eval_config import EvalConfig
from gankit.evaluation import EvalError
from gankit.scoring import Evaluator, resolve_plan
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import RunError, load_data, load_generator, run

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "dcgan_mnist.toml"
CLASSES = range(10)


def train(path: Path, overrides: list[str], scratch: Path, context: DataContext) -> tuple[Path, str, float]:
    """One run of the recipe with these overrides: its directory, how far it got, its seconds."""
    started = time.perf_counter()
    result = run(load_recipe(path, overrides, load_registry()), runs_root=scratch, context=context)
    return result.run_dir, f"{result.finished.step} steps, {result.finished.status}", time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the recipe whose settings every run uses")
    parser.add_argument("--target", type=int, default=9, choices=CLASSES,
                        help="the class with few images (default 9, Ankle boot); the other nine pre-train")
    parser.add_argument("--images", type=int, default=200, help="training images of the target class")
    parser.add_argument("--pretrain-steps", type=int, help="steps on the nine classes (default: the recipe's length)")
    parser.add_argument("--steps", type=int, default=780, help="steps on the target class, for every variant")
    parser.add_argument("--freeze", type=comma_list(int), default=[1, 2], help="comma-separated freeze_d values")
    parser.add_argument("--seeds", type=comma_list(int), default=[0], help="comma-separated seeds of the variants")
    parser.add_argument("-n", type=int, default=1000, help="generated images scored (real: as many, at most 1,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scored noise")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key in every run, as gankit run --set does (repeatable)")
    args = parser.parse_args()

    cache = default_cache_dir()
    context = DataContext(cache, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    # Unconditional (one class is all the few-image runs see) and sized in steps, not the
    # headline's 120-second budget.
    base = ["dataset.use=fashion-mnist", "architecture.conditional=false", "train.max_seconds=1e9", "export=[]",
            "train.checkpoint_every=0", *args.sets]
    others = [label for label in CLASSES if label != args.target]
    target = [f"dataset.classes=[{args.target}]"]
    few = [*target, f"dataset.limit={args.images}", f"train.steps={args.steps}"]

    registry = load_registry()
    config = EvalConfig(metrics=["fid"], features="domain", n=args.n, seed=args.seed, split="test")
    try:  # the classifier learns all ten classes; the real images are the target's test images
        evaluator = Evaluator(resolve_plan(config, registry), load_recipe(args.recipe, [*base, *target], registry),
                              cache_dir=cache, loaded={"train": load_data(load_recipe(args.recipe, base, registry),
                                                                           context)})
        target_data = load_data(load_recipe(args.recipe, [*base, *target], registry), context)
        held_out = target_data.images[args.images:args.images + args.n]
        floor = evaluator.score(held_out)["fid"]
    except (EvalError, RunError) as error:
        sys.exit(f"cannot score: {error}")
    names = target_data.class_names
    shown_target = f"{args.target} ({names[args.target]})" if names else str(args.target)

    variants = {"from scratch": [], "fine-tuned": ["train.init_from={source}"]}
    variants.update({f"fine-tuned, freeze_d = {k}": ["train.init_from={source}", f"train.freeze_d={k}"]
                     for k in args.freeze})
    rows = []
    with tempfile.TemporaryDirectory(prefix="gankit-transfer-") as scratch:
        length = [f"train.steps={args.pretrain_steps}"] if args.pretrain_steps else []
        source, pretrained, seconds = train(args.recipe, [*base, f"dataset.classes={others}", *length],
                                            Path(scratch) / "pretrain", context)
        print(f"nine classes: {pretrained} in {seconds:.0f}s", file=sys.stderr, flush=True)
        for variant, extra in variants.items():
            found = []
            for seed in args.seeds:
                overrides = [*base, *few, f"seed={seed}", *(item.format(source=source) for item in extra)]
                try:
                    run_dir, status, seconds = train(args.recipe, overrides, Path(scratch) / "few", context)
                    scores, _ = evaluator.score_generator(load_generator(registry, run_dir)[1])
                except (RunError, EvalError) as error:
                    found.append((f"seed {seed} skipped: {error}", ""))
                    continue
                found.append(({"fid": scores["fid"]}, status))
                print(f"{variant}, seed {seed}: FID {scores['fid']:.2f} ({status}, {seconds:.0f}s)",
                      file=sys.stderr, flush=True)
            rows.append((variant, *summary(found)))

    print(f"\ndomain FID of class {shown_target}: {args.n:,} generated vs its test images, after {args.steps} steps "
          f"on its first {args.images} training images (seeds: {', '.join(map(str, args.seeds))}; "
          f"lower is better); pre-trained on the other nine classes for {pretrained}\n")
    table = [("variant", "FID", "notes"), ("real vs real (floor)", f"{floor:.2f}",
                                           f"{len(held_out):,} other training images of the class")]
    table += [(variant, columns[list(SCORES).index("fid")], columns[-1]) for variant, *columns in rows]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[2])


if __name__ == "__main__":
    main()
