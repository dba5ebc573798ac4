"""Does the torch backend keep its speed on a machine that other processes share? Trains
the headline DCGAN (recipes/dcgan_mnist.toml), the seed MLP
(recipes/tutorials/pytorch_mlp_mnist.toml) and the conditional DCGAN
(recipes/cgan_mnist.toml) with ``backend.threads`` at its default ("auto"), at 1 and at
every core (0, torch's default), first on the machine as it is and then with a competing
CPU load that this script starts itself: ``--load`` processes spinning in a Python loop
(default: half the cores). Each setting builds its trainer after the load has started, as
a run would, so "auto" sees it. Prints images/s for each, and each setting's share of the
best one under the same conditions; asserts nothing.

    python benchmarks/threads.py [--seconds 3] [--rounds 2] [--load N] [--model dcgan,mlp,cgan]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

import torch

from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import load_data
from quality import comma_list
from tf_step import GankitLoop, timed

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
MODELS = {"dcgan": RECIPES / "dcgan_mnist.toml", "mlp": RECIPES / "tutorials" / "pytorch_mlp_mnist.toml",
          "cgan": RECIPES / "cgan_mnist.toml"}
SETTINGS = {"auto (default)": '"auto"', "1 thread": "1", "every core (0)": "0"}


def spin(until: float) -> None:
    while time.time() < until:
        pass


def rate(loop: GankitLoop, batch_size: int, seconds: float) -> float:
    """Images/s over steps timed in chunks of 5 until ``seconds`` have passed."""
    steps, spent = 0, 0.0
    while spent < seconds:
        spent += timed(loop, 5)[0]
        steps += 5
    return steps * batch_size / spent


def measure(path: Path, setting: str, seconds: float, rounds: int) -> tuple[float, int]:
    """Images/s (the best round) of a trainer built now with this thread setting, and the
    thread count it used."""
    recipe = load_recipe(path, [f"backend.threads={setting}", 'backend.device="cpu"', "export=[]"], load_registry())
    loop = GankitLoop(recipe, load_data(recipe, DataContext(warn=lambda message: None)))
    loop.run(3)  # warm up
    best = max(rate(loop, recipe.train.batch_size, seconds) for _ in range(rounds))
    return best, torch.get_num_threads()


def table(title: str, models: list[str], args) -> None:
    print(f"\n{title}")
    for model in models:
        found = {name: measure(MODELS[model], setting, args.seconds, args.rounds) for name, setting in SETTINGS.items()}
        best = max(rate for rate, _ in found.values())
        shown = "   ".join(f"{name}: {rate:7.0f} img/s ({threads} thr, {rate / best:4.0%})"
                           for name, (rate, threads) in found.items())
        print(f"  {model:6s} {shown}", flush=True)


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3, help="seconds of training per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per setting (the best is shown)")
    parser.add_argument("--load", type=int, default=max(1, cores // 2), help="competing processes (each one core)")
    parser.add_argument("--model", type=comma_list(str), default=list(MODELS), help=", ".join(MODELS))
    args = parser.parse_args()
    print(f"PyTorch {torch.__version__}, {cores} CPUs, torch's default {torch.get_num_threads()} threads")
    table("the machine as it is", args.model, args)
    context = multiprocessing.get_context("spawn")
    spinners = [context.Process(target=spin, args=(time.time() + 24 * 3600,), daemon=True) for _ in range(args.load)]
    for process in spinners:
        process.start()
    try:
        time.sleep(1)  # let the load take its cores
        table(f"with {args.load} competing process{'es' if args.load > 1 else ''} spinning", args.model, args)
    finally:
        for process in spinners:
            process.terminate()


if __name__ == "__main__":
    main()
