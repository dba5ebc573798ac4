"""Which configuration is better, and is the difference real?

Runs whose resolved recipes differ only in their seed are one *configuration*; each run's
score is its recipe's ``[eval]`` headline metric (the first one), read from ``eval.json``
at the end of training (``last``) or at its best checkpoint (``best``). A configuration's
score is the mean over its seeds, with the standard deviation and a 95 % confidence
interval (Student's t). The configurations are ranked by mean, and each is tested against
the best with Welch's two-sided t-test (unequal variances), the p-values Holm-corrected
for the number of comparisons: a difference is called significant when the corrected p
is below ``ALPHA``. scipy does the statistics; Holm's step-down is four lines here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gankit.errors import GankitError
from gankit.recipe import RecipeError, read_toml
from gankit.rundir import RunDir

ALPHA = 0.05
TEST = "Welch's two-sided t-test against the best, Holm-corrected, α = 0.05"
SEED_SUFFIX = re.compile(r"-seed\d+$")
RUN_OWN_KEYS = ("name", "seed", "gankit")
"""What may differ between the runs of one configuration."""


class CompareError(GankitError):
    """Nothing to compare: a path that holds no runs, or runs with no scores."""


@dataclass(frozen=True)
class RunScore:
    """One run's headline score, or why it has none (``value`` None)."""

    run_dir: Path
    configuration: str
    label: str
    settings: dict[str, Any]
    seed: int
    value: float | None = None
    metric: str = ""
    higher_is_better: bool = False
    why: str = ""


@dataclass
class Configuration:
    """The runs of one configuration, and where it ranks."""

    label: str
    settings: dict[str, Any]
    runs: list[RunScore]
    rank: int = 0
    p_value: float | None = None
    significant: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        return [run.value for run in self.runs if run.value is not None]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sd(self) -> float | None:
        values = self.values
        if len(values) < 2:
            return None
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % confidence interval of the mean (Student's t), with two seeds or more."""
        from scipy import stats

        values = self.values
        if len(values) < 2:
            return None
        half = stats.t.ppf(0.975, len(values) - 1) * self.sd / math.sqrt(len(values))
        return self.mean - half, self.mean + half

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.runs if run.value is not None)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "settings": self.settings, "rank": self.rank, "n": len(self.values),
                "seeds": self.seeds, "mean": self.mean, "sd": self.sd, "ci95": self.interval,
                "p_vs_best": self.p_value, "significantly_worse": self.significant,
                "runs": [str(run.run_dir) for run in self.runs]}


@dataclass
class Comparison:
    metric: str
    higher_is_better: bool
    at: str
    ranked: list[Configuration]
    unscored: list[RunScore]

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "higher_is_better": self.higher_is_better, "at": self.at, "test": TEST,
                "configurations": [c.as_dict() for c in self.ranked],
                "unscored": [{"run": str(r.run_dir), "why": r.why} for r in self.unscored]}


def configuration_digest(recipe: dict[str, Any]) -> str:
    """What makes runs one configuration: their resolved recipes, less name, seed and provenance."""
    kept = {key: value for key, value in recipe.items() if key not in RUN_OWN_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_score(run_dir: Path, at: str = "last", metric: str | None = None) -> RunScore:
    """``run_dir``'s headline score at ``at`` (``last`` or ``best``)."""
    try:
        recipe = read_toml(run_dir / "recipe.toml")
    except RecipeError as error:
        return RunScore(run_dir, f"unreadable {run_dir}", run_dir.name, {}, 0, why=str(error))
    sweep = dict(recipe.get("gankit", {}).get("sweep") or {})
    sweep.pop("seed", None)
    label = SEED_SUFFIX.sub("", RunDir(run_dir).unnumbered)  # the run's name, with its sweep values
    base = RunScore(run_dir, configuration_digest(recipe), label, sweep, int(recipe.get("seed", 0)))
    if "eval" not in recipe:
        return _without(base, "its recipe has no [eval] table, so nothing scored it; add one to compare runs")
    summary = RunDir(run_dir).read_summary() or {}
    if summary.get("status") != "completed":
        return _without(base, f"it is {summary.get('status', 'not finished')}, not completed")
    try:
        during = json.loads((run_dir / "eval.json").read_text())["during_training"]
        best_by = during["best_by"]
    except (OSError, ValueError, KeyError, TypeError):
        return _without(base, "its eval.json holds no scores from training")
    key = metric or best_by.split(",")[0]
    record = during.get("best") if at == "best" else during.get("last")
    value = (record or {}).get("scores", {}).get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return _without(base, f"no finite {key} at its {at} evaluation")
    return RunScore(**{**base.__dict__, "value": float(value), "metric": key,
                       "higher_is_better": "higher is better" in best_by})


def _without(score: RunScore, why: str) -> RunScore:
    return RunScore(**{**score.__dict__, "why": why})


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i), kept monotone, at most 1."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted, running = [0.0] * len(p_values), 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


def welch_p(first: list[float], second: list[float]) -> float | None:
    """Welch's two-sided p-value, or None with fewer than two values a side; equal
    constant samples differ not at all (p = 1), different constant ones entirely (p = 0)."""
    from scipy import stats

    if len(first) < 2 or len(second) < 2:
        return None
    if len(set(first)) == 1 and len(set(second)) == 1:
        return 1.0 if first[0] == second[0] else 0.0
    with warnings.catch_warnings():  # scipy warns of lost precision when one side is constant; the p holds
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def rank(configurations: list[Configuration], higher_is_better: bool) -> list[Configuration]:
    """The configurations by mean score, best first, each tested against the best."""
    ordered = sorted(configurations, key=lambda c: -c.mean if higher_is_better else c.mean)
    best = ordered[0] if ordered else None
    tested = [(c, welch_p(best.values, c.values)) for c in ordered[1:]] if best else []
    tested = [(c, p) for c, p in tested if p is not None]
    for (configuration, _), adjusted in zip(tested, holm([p for _, p in tested])):
        configuration.p_value, configuration.significant = adjusted, adjusted < ALPHA
    for position, configuration in enumerate(ordered, 1):
        configuration.rank = position
    return ordered


def group(scores: Iterable[RunScore]) -> list[Configuration]:
    """The scored runs by configuration, in the order each first appears."""
    groups: dict[str, Configuration] = {}
    for score in scores:
        if score.configuration not in groups:
            groups[score.configuration] = Configuration(score.label, score.settings, [])
        groups[score.configuration].runs.append(score)
    labels = [c.label for c in groups.values()]
    for configuration in groups.values():
        if labels.count(configuration.label) > 1 and not configuration.settings:
            configuration.label += f" ({configuration.runs[0].run_dir.name})"
    return list(groups.values())


def run_dirs(paths: Iterable[Path]) -> list[Path]:
    """The run directories ``paths`` stand for: a run directory itself, or every run
    directory inside a folder (a batch's runs directory, a search's ``trials``)."""
    found: list[Path] = []
    for path in paths:
        if (path / "recipe.toml").is_file():
            found.append(path)
        elif path.is_dir():
            inside = sorted(p.parent for p in path.glob("**/recipe.toml") if (p.parent / "summary.json").exists()
                            or (p.parent / "metrics.jsonl").exists())
            if not inside:
                raise CompareError(f"{path}: holds no gankit run directories; give run directories or a folder of them")
            found += inside
        else:
            raise CompareError(f"{path}: does not exist; give run directories or a folder of them")
    return list(dict.fromkeys(found))


def compare(paths: Iterable[Path], at: str = "last", metric: str | None = None) -> Comparison:
    """Group, score and rank the runs ``paths`` stand for."""
    scores = [read_score(run_dir, at, metric) for run_dir in run_dirs(paths)]
    scored = [s for s in scores if s.value is not None]
    if not scored:
        why = scores[0].why if scores else "no runs"
        raise CompareError(f"no run has a score to compare: {scores[0].run_dir if scores else ''}: {why}")
    metrics = {s.metric for s in scored}
    if len(metrics) > 1:
        raise CompareError(f"the runs are scored on different metrics ({', '.join(sorted(metrics))}); "
                           f"choose one with --metric")
    higher = scored[0].higher_is_better
    return Comparison(scored[0].metric, higher, at, rank(group(scored), higher), [s for s in scores if s.value is None])
