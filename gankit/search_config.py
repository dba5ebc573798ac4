"""A recipe's ``[search]`` table: the parameters a search draws, and how it draws them.

    [search]
    trials = 30
    sampler = "tpe"                        # tpe | random
    pruner = "median"                      # median | halving | none
    budget = { cpu_seconds = 120 }         # or { steps = 500 }, or { seconds = 120 } (wall clock)
    "train.lr_d" = { log_uniform = [1e-5, 1e-3] }
    "train.loss" = { choice = ["bce", "hinge", "lsgan"] }
    "architecture.width" = { int = [32, 128], step = 32 }

Keys with a dot are recipe keys to search; the others are the search's settings. Every
mistake is a one-line ``RecipeError`` before any trial starts.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gankit.recipe import RecipeError

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "log_int", "choice")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
BUDGETS = {"steps": ("train.steps", None), "cpu_seconds": ("train.max_seconds", "cpu"),
           "seconds": ("train.max_seconds", "wall")}
"""A budget's kind: the recipe key it sets, and the clock it is measured on."""
SETTINGS = ("trials", "sampler", "pruner", "startup_trials", "budget", "seed", "score_at", "confirm")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Parameter:
    """One searched recipe key and the distribution its values are drawn from."""

    key: str
    kind: str
    values: tuple
    step: float | int | None = None

    def suggest(self, trial) -> Any:
        """Draw the value for an Optuna ``trial``."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        low, high = self.values
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, low, high, step=self.step or 1, log=self.kind == "log_int")
        return trial.suggest_float(self.key, low, high, step=self.step, log=self.kind == "log_uniform")

    def extremes(self) -> list[Any]:
        """Values that between them show whether every draw makes a valid recipe."""
        return list(self.values)

    def describe(self) -> str:
        if self.kind == "choice":
            return " | ".join(map(str, self.values))
        step = f" by {self.step}" if self.step else ""
        return f"{self.kind.replace('_', '-')} {self.values[0]} .. {self.values[1]}{step}"


@dataclass(frozen=True)
class SearchConfig:
    trials: int
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 5
    budget: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    score_at: str = "last"
    confirm_top: int = 0
    confirm_seeds: tuple[int, ...] = ()
    parameters: tuple[Parameter, ...] = ()

    def budget_overrides(self) -> dict[str, Any]:
        """The recipe keys a trial's budget sets."""
        if not self.budget:
            return {}
        kind, amount = next(iter(self.budget.items()))
        key, clock = BUDGETS[kind]
        return {key: amount, **({"train.clock": clock} if clock else {})}

    def as_table(self) -> dict[str, Any]:
        """Back to the ``[search]`` table it was read from (for search.json)."""
        table: dict[str, Any] = {"trials": self.trials, "sampler": self.sampler, "pruner": self.pruner,
                                 "startup_trials": self.startup_trials, "seed": self.seed, "score_at": self.score_at}
        if self.budget:
            table["budget"] = dict(self.budget)
        if self.confirm_top:
            table["confirm"] = {"top": self.confirm_top, "seeds": list(self.confirm_seeds)}
        for p in self.parameters:
            table[p.key] = {p.kind: list(p.values), **({"step": p.step} if p.step else {})}
        return table


def _parameter(key: str, spec: Any, where: str) -> Parameter:
    example = f'e.g. "{key}" = {{ log_uniform = [1e-5, 1e-3] }} or {{ choice = [...] }}'
    if not isinstance(spec, dict):
        raise RecipeError(f"{where}.{key}: expected a distribution, {example}")
    spec = dict(spec)
    step = spec.pop("step", None)
    kinds = [name for name in spec if name in DISTRIBUTIONS]
    unknown = [name for name in spec if name not in DISTRIBUTIONS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], DISTRIBUTIONS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(DISTRIBUTIONS)}"
        raise RecipeError(f"{where}.{key}: unknown distribution {unknown[0]!r}; {hint}")
    if len(kinds) != 1:
        raise RecipeError(f"{where}.{key}: name exactly one distribution ({', '.join(DISTRIBUTIONS)}), {example}")
    kind, values = kinds[0], spec[kinds[0]]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise RecipeError(f"{where}.{key}.choice: expected a non-empty list of values")
        if any(isinstance(v, (list, dict)) for v in values):
            raise RecipeError(f"{where}.{key}.choice: choose among numbers, strings or booleans only")
        if step is not None:
            raise RecipeError(f"{where}.{key}.step: a choice takes no step")
        return Parameter(key, kind, tuple(values))
    if not isinstance(values, list) or len(values) != 2 or not all(_number(v) for v in values):
        raise RecipeError(f"{where}.{key}.{kind}: expected [low, high], two numbers (got {values!r})")
    low, high = values
    if low >= high:
        raise RecipeError(f"{where}.{key}.{kind}: the range runs the wrong way or is empty ({low} .. {high}); "
                          f"write [{min(low, high)}, {max(low, high)}] with low below high")
    if kind.startswith("log") and low <= 0:
        raise RecipeError(f"{where}.{key}.{kind}: a log scale needs low above 0 (got {low})")
    if kind in ("int", "log_int"):
        if not all(isinstance(v, int) for v in values) or (step is not None and not isinstance(step, int)):
            raise RecipeError(f"{where}.{key}.{kind}: an integer range needs integer bounds and step")
        if kind == "log_int" and step not in (None, 1):
            raise RecipeError(f"{where}.{key}.step: a log_int range takes no step")
    if step is not None and (not _number(step) or step <= 0):
        raise RecipeError(f"{where}.{key}.step: expected a number above 0 (got {step!r})")
    if kind == "log_uniform" and step is not None:
        raise RecipeError(f"{where}.{key}.step: a log_uniform range takes no step")
    return Parameter(key, kind, (low, high), step)


def parse_search(table: Any, path: Path) -> SearchConfig:
    """The ``[search]`` table of the recipe at ``path``, checked."""
    where = f"{path}: search"
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: expected a [search] table")
    settings = {key: value for key, value in table.items() if "." not in key}
    parameters = tuple(_parameter(key, spec, where) for key, spec in table.items() if "." in key)
    for key in settings:
        if key not in SETTINGS:
            close = difflib.get_close_matches(key, SETTINGS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(SETTINGS)}"
            raise RecipeError(f"{where}.{key}: unknown setting; {hint} (a searched key has a dot, e.g. \"train.lr_d\")")
    if not parameters:
        raise RecipeError(f'{where}: names no parameter to search; add one, e.g. "train.lr_d" = '
                          "{ log_uniform = [1e-5, 1e-3] }")
    trials = settings.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or not 1 <= trials <= 100_000:
        raise RecipeError(f"{where}.trials: expected the number of trials, an integer from 1 (got {trials!r})")
    for name, known in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("score_at", ("last", "best"))):
        if name in settings and settings[name] not in known:
            raise RecipeError(f"{where}.{name}: {settings[name]!r} is not one of {', '.join(known)}")
    for name in ("startup_trials", "seed"):
        value = settings.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
            raise RecipeError(f"{where}.{name}: expected an integer from 0 (got {value!r})")
    budget = settings.get("budget", {})
    if not isinstance(budget, dict) or len(budget) > 1 or any(k not in BUDGETS for k in budget):
        raise RecipeError(f"{where}.budget: expected one of {{ steps = N }}, {{ cpu_seconds = S }}, {{ seconds = S }} "
                          f"(got {budget!r})")
    if budget:
        (kind, amount), = budget.items()
        if not _number(amount) or amount <= 0 or (kind == "steps" and not isinstance(amount, int)):
            raise RecipeError(f"{where}.budget.{kind}: expected a number above 0 (got {amount!r})")
        searched = {p.key for p in parameters}
        if BUDGETS[kind][0] in searched:
            raise RecipeError(f"{where}: {BUDGETS[kind][0]} is both searched and set by the budget; keep one")
    top, seeds = _confirm(settings.get("confirm"), where)
    return SearchConfig(trials, settings.get("sampler", "tpe"), settings.get("pruner", "median"),
                        settings.get("startup_trials", 5), dict(budget), settings.get("seed", 0),
                        settings.get("score_at", "last"), top, seeds, parameters)


def _confirm(confirm: Any, where: str) -> tuple[int, tuple[int, ...]]:
    """``confirm = { top = 5, seeds = [0, 1, 2] }``: after the trials, the best five
    configurations (and the recipe as written) once per seed, compared."""
    if confirm is None:
        return 0, ()
    example = "e.g. confirm = { top = 5, seeds = [0, 1, 2] }"
    if not isinstance(confirm, dict) or set(confirm) != {"top", "seeds"}:
        raise RecipeError(f"{where}.confirm: expected top and seeds, {example}")
    top, seeds = confirm["top"], confirm["seeds"]
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise RecipeError(f"{where}.confirm.top: expected how many configurations, an integer from 1 (got {top!r})")
    if (not isinstance(seeds, list) or len(seeds) < 2 or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)):
        raise RecipeError(f"{where}.confirm.seeds: expected two or more different seeds, {example}")
    return top, tuple(seeds)
