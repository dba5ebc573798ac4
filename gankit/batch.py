"""Several runs, one after another: each recipe (and each sweep combination) in turn,
with what happened to each recorded for the summary table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from gankit.recipe import MAX_RUNS, Recipe, RecipeError, load_recipes
from gankit.registry import Registry
from gankit.runner import RunError, RunResult


@dataclass
class Outcome:
    """One line of the batch summary."""

    label: str
    status: str  # completed, interrupted, diverged, aborted, invalid, failed, skipped
    backend: str = ""
    message: str = ""
    steps: int = 0
    seconds: float = 0.0
    final: dict = field(default_factory=dict)
    run_dir: Path | None = None
    sweep: dict = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    @classmethod
    def of(cls, result: RunResult) -> "Outcome":
        finished = result.finished
        return cls(result.recipe.name, finished.status, result.recipe.backend.name, finished.message,
                   finished.step, result.seconds, finished.values, result.run_dir, result.recipe.sweep)


def load_all(paths: Iterable[Path], overrides: list[str], registry: Registry,
             max_runs: int = MAX_RUNS) -> tuple[list[Recipe], list[Outcome]]:
    """Every recipe the paths stand for (sweeps expanded), and an ``invalid`` outcome for
    each file that cannot be loaded or that would take the batch past ``max_runs``."""
    recipes, invalid = [], []
    for path in paths:
        try:
            loaded = load_recipes(path, overrides, registry, max_runs)
            if len(recipes) + len(loaded) > max_runs:
                raise RecipeError(f"{path}: takes the batch to {len(recipes) + len(loaded):,} runs, more than the "
                                  f"{max_runs:,} allowed; pass --max-runs {len(recipes) + len(loaded)} to run them all")
            recipes += loaded
        except RecipeError as error:
            invalid.append(Outcome(str(path), "invalid", message=str(error)))
    return recipes, invalid


def run_all(
    recipes: list[Recipe],
    start: Callable[[Recipe], RunResult],
    *,
    keep_going: bool,
    stop_requested: Callable[[], bool],
    report: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Run each recipe with ``start``; after a failure, the rest run only with ``keep_going``.
    An interrupted run ends the batch whatever ``keep_going`` says. A run that crashes is a
    failed line of the table like any other, never the end of the batch."""
    outcomes: list[Outcome] = []
    for index, recipe in enumerate(recipes):
        outcome = attempt(recipe, start)
        outcomes.append(outcome)
        report(outcome)
        if outcome.status == "interrupted" or stop_requested() or (not outcome.succeeded and not keep_going):
            outcomes += [Outcome(r.name, "skipped", r.backend.name, "not run", sweep=r.sweep) for r in recipes[index + 1:]]
            break
    return outcomes


def attempt(recipe: Recipe, start: Callable[[Recipe], RunResult]) -> Outcome:
    """``start(recipe)``'s outcome: a run that cannot start or crashes is a failed line of
    the table like any other, never the end of the batch."""
    try:
        return Outcome.of(start(recipe))
    except RunError as error:
        return Outcome(recipe.name, "failed", recipe.backend.name, str(error), sweep=recipe.sweep)
    except Exception as error:  # a bug or a resource gone (memory, device): the rest may still run
        message = f"crashed: {type(error).__name__}: {error}".splitlines()[0]
        return Outcome(recipe.name, "failed", recipe.backend.name, message, sweep=recipe.sweep)
