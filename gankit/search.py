"""``gankit run`` of a recipe with a ``[search]`` table: an Optuna study whose trials are
ordinary runs, trained where a batch's runs train (one at a time, ``--jobs N``, ``--ray``).

A search lives in ``searches/NNNNN-name/``::

    search.toml   the recipe as given (overrides applied): what a resume reads
    search.json   where the study is stored, and what the search found
    study.db      Optuna's SQLite storage (unless --storage names another)
    trials/       one run directory per trial, NNNNN-name-tTTTT
    confirm/      with confirm = {...}: the best configurations and the recipe as written, once per seed

Optuna keeps every trial's state, so a search killed at any moment resumes with ``gankit
run --resume searches/NNNNN-name``: a finished trial is never repeated, and a trial that
was running continues from its run's checkpoint (its run directory is recorded in the
study before it begins). During training a trial reports its ``[eval]`` scores to the
study from its own process; when the pruner says so it stops with a checkpoint and is
marked ``pruned`` (resumable like any run).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from gankit.errors import GankitError
from gankit.files import write_json, write_text
from gankit.recipe import RecipeError, apply_overrides, build_recipe, check_requirements, read_toml, set_key
from gankit.rundir import RunDir
from gankit.search_config import SearchConfig, parse_search

SEARCH_FILE, RECIPE_FILE = "search.json", "search.toml"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class SearchError(GankitError):
    """A search that cannot start or resume: one line, nothing run."""


def optuna():
    """Optuna, quiet, or a SearchError saying how to install it."""
    try:
        import optuna as module
    except ImportError:
        raise SearchError("a [search] needs Optuna, which is not installed; pip install 'gankit[search]'") from None
    module.logging.set_verbosity(logging.WARNING)
    return module


def is_search(path: Path) -> bool:
    return (path / SEARCH_FILE).is_file()


def has_search_table(path: Path) -> bool:
    try:
        return "search" in read_toml(path)
    except RecipeError:
        return False


def make_sampler(config: SearchConfig):
    samplers = optuna().samplers
    if config.sampler == "random":
        return samplers.RandomSampler(seed=config.seed)
    return samplers.TPESampler(seed=config.seed, n_startup_trials=config.startup_trials)


def make_pruner(pruner: str, startup_trials: int):
    pruners = optuna().pruners
    if pruner == "median":
        return pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if pruner == "halving":
        return pruners.SuccessiveHalvingPruner()
    return pruners.NopPruner()


class TrialLink:
    """A trial's side, in the process training it: each ``[eval]`` score goes to the study,
    and the pruner's verdict comes back (``pruned``, then the run stops with a checkpoint)."""

    def __init__(self, link: dict[str, Any]):
        module = optuna()
        study = module.load_study(study_name=link["study"], storage=link["storage"],
                                  pruner=make_pruner(link["pruner"], link["startup_trials"]))
        self.trial = module.trial.Trial(study, link["trial_id"])
        self.metric, self.pruner = link["metric"], link["pruner"]
        self.pruned_at: tuple[int, float] | None = None

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

    def handle(self, event) -> None:
        from gankit.events import EvalLogged

        if isinstance(event, EvalLogged) and self.metric in event.values and self.pruned_at is None:
            value = float(event.values[self.metric])
            if not math.isfinite(value):
                return
            self.trial.report(value, event.step)
            if self.trial.should_prune():
                self.pruned_at = (event.step, value)

    def finish(self, outcome):
        """A run stopped by the pruner is ``pruned`` (in summary.json too), not interrupted."""
        if not self.pruned or outcome.status != "interrupted" or outcome.run_dir is None:
            return outcome
        step, value = self.pruned_at
        message = (f"pruned by the search's {self.pruner} pruner at step {step} ({self.metric} {value:.4g}); "
                   f"resume with: gankit run --resume {outcome.run_dir}")
        run = RunDir(outcome.run_dir)
        summary = run.read_summary()
        if summary is not None:
            try:
                write_json(run.summary, {**summary, "status": "pruned", "message": message})
            except OSError:
                pass  # the outcome still says pruned; the study is told so
        outcome.status, outcome.message = "pruned", message
        return outcome


@dataclass
class Search:
    root: Path
    data: dict[str, Any]
    """The recipe without [search]: what every trial starts from."""
    config: SearchConfig
    storage: str
    metric: str
    higher_is_better: bool

    @property
    def name(self) -> str:
        return str(self.data.get("name", self.root.name.split("-", 1)[-1]))

    @property
    def recipe_path(self) -> Path:
        return self.root / RECIPE_FILE

    # Making and opening.

    @classmethod
    def prepare(cls, path: Path, overrides: list[str], registry) -> tuple[dict[str, Any], SearchConfig, str, bool]:
        """Read and check a search recipe: (the base recipe, the search, its metric, whether
        higher is better). Every draw's extremes must make a valid recipe."""
        data = apply_overrides(read_toml(path), overrides, path)
        config = parse_search(data.pop("search"), path)
        sweep = data.get("sweep")
        if sweep is not None:
            both = [p.key for p in config.parameters if isinstance(sweep, dict) and p.key in sweep]
            if both:
                raise RecipeError(f"{path}: {both[0]}: set by both [sweep] and [search]; keep it in one of them")
            raise RecipeError(f"{path}: sweep: a search takes no [sweep]; search its keys with choice = [...] instead")
        if "seeds" in data:
            raise RecipeError(f"{path}: seeds: a search's trials run at the recipe's seed; to rerun the best "
                              "configurations over seeds, set [search] confirm = { top = 5, seeds = [0, 1, 2] }")
        recipe = build_recipe(copy.deepcopy(data), path, registry)
        if recipe.eval is None:
            raise RecipeError(f"{path}: search: trials are scored by the recipe's [eval]; add an [eval] table "
                              '(e.g. metrics = ["fid"], every = 100)')
        check_requirements(recipe)  # before any trial, not in each
        metric, component = next(iter(recipe.eval.metrics.items()))
        higher = bool(getattr(component.factory, "higher_is_better", False))
        for parameter in config.parameters:
            for value in parameter.extremes():
                variant = copy.deepcopy(data)
                set_key(variant, parameter.key, value, path, f"search.{parameter.key}:")
                for key, amount in config.budget_overrides().items():
                    set_key(variant, key, amount, path, "search.budget:")
                try:
                    build_recipe(variant, path, registry)
                except RecipeError as error:
                    raise RecipeError(f"search.{parameter.key} = {value!r}: {error}") from None
        return data, config, metric, higher

    @classmethod
    def create(cls, path: Path, overrides: list[str], registry, searches_root: Path, storage: str | None) -> Search:
        data, config, metric, higher = cls.prepare(path, overrides, registry)
        root = RunDir.create(searches_root, str(data.get("name", path.stem))).path
        storage_url = storage or f"sqlite:///{(root / 'study.db').resolve()}"
        search = cls(root, data, config, storage_url, metric, higher)
        try:
            search.study()
        except SearchError:
            for leftover in root.iterdir():
                leftover.unlink()
            root.rmdir()
            raise
        write_text(root / RECIPE_FILE, tomli_w.dumps({**data, "search": config.as_table()}))
        write_json(root / SEARCH_FILE, {"study": root.name, "storage": storage, "metric": metric,
                                        "higher_is_better": higher, "search": config.as_table()})
        return search

    @classmethod
    def open(cls, root: Path, registry) -> Search:
        try:
            recorded = json.loads((root / SEARCH_FILE).read_text())
        except (OSError, ValueError) as error:
            raise SearchError(f"{root / SEARCH_FILE}: cannot read it ({error}); is {root} a search?") from None
        data, config, metric, higher = cls.prepare(root / RECIPE_FILE, [], registry)
        storage = recorded.get("storage") or f"sqlite:///{(root / 'study.db').resolve()}"
        return cls(root, data, config, storage, metric, higher)

    def study(self):
        module = optuna()
        try:
            return module.create_study(
                study_name=self.root.name, storage=self.storage, load_if_exists=True,
                direction="maximize" if self.higher_is_better else "minimize",
                sampler=make_sampler(self.config), pruner=make_pruner(self.config.pruner, self.config.startup_trials))
        except Exception as error:  # SQLAlchemy's and the database drivers' errors alike
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SearchError(f"--storage {self.storage}: cannot open it ({first})") from None

    # Trials.

    def trial_data(self, params: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        """The recipe of a trial with ``params`` (and a seed, when confirming), trained
        for the search's budget."""
        variant = copy.deepcopy(self.data)
        for key, value in {**params, **self.config.budget_overrides()}.items():
            set_key(variant, key, value, self.recipe_path, "search")
        if seed is not None:
            variant["seed"] = seed
        return variant

    def link(self, trial_id: int) -> dict[str, Any]:
        return {"study": self.root.name, "storage": self.storage, "trial_id": trial_id, "metric": self.metric,
                "pruner": self.config.pruner, "startup_trials": self.config.startup_trials}

    def counted(self, study) -> int:
        return sum(t.state.name in FINISHED and not t.user_attrs.get("abandoned") for t in study.get_trials(deepcopy=False))

    def best(self, study):
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        return sorted(done, key=lambda t: -t.value if self.higher_is_better else t.value)


def trial_name(search: Search, number: int) -> str:
    return f"{search.name}-t{number:04d}"


def existing_run(folder: Path, name: str) -> Path | None:
    """The run directory ``NNNNN-name`` in ``folder``, if one was made."""
    return next((run.path for run in RunDir.numbered(folder) if run.unnumbered == name), None)


def best_recipe(root: Path, registry, rank: int = 1) -> tuple[str, Any]:
    """The recipe of the configuration at ``rank`` (1: the best) in the search at ``root``,
    as TOML text with a comment saying where it came from, and its trial."""
    search = Search.open(root, registry)
    ranked = search.best(search.study())
    if len(ranked) < rank:
        raise SearchError(f"{root}: {len(ranked)} trial(s) completed, so there is no rank {rank}; "
                          "resume the search to run more")
    trial = ranked[rank - 1]
    data = search.trial_data(trial.params)
    build_recipe(copy.deepcopy(data), search.recipe_path, registry)
    settings = ", ".join(f"{key} = {value!r}" for key, value in trial.params.items())
    budget = ", ".join(f"{key} = {value!r}" for key, value in search.config.budget_overrides().items())
    header = (f"# Trial {trial.number} of the search {root} (rank {rank}): {search.metric} {trial.value:.4g}.\n"
              f"# Its settings: {settings}.\n"
              + (f"# It trains for the search's budget ({budget}), as the trial did.\n" if budget else ""))
    return header + tomli_w.dumps(data), trial
