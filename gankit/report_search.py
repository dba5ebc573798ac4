"""A search in ``gankit report``: its trials as its Optuna study holds them, the best one,
and two pictures Optuna computes, the optimisation history and the searched parameters'
importances (drawn by matplotlib on Agg, kept as PNG bytes for the page to embed).

The study is only read: the search's own ``study.db`` is opened read-only, so reporting a
search that is still running changes nothing. A study that cannot be read, or a picture
that cannot be drawn, is one line in the search's section, never a traceback.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from gankit.search import SEARCH_FILE, SearchError, is_search, optuna

IMPORTANCE_MIN_TRIALS = 5
"""Fewer completed trials than this say nothing about which parameter matters."""


@dataclass(frozen=True)
class Trial:
    number: int
    state: str  # complete, pruned, fail, running or waiting
    value: float | None
    params: dict[str, Any]
    run_dir: Path | None
    note: str = ""  # why it failed, or the last score it reported


@dataclass
class SearchReport:
    path: Path
    metric: str
    higher_is_better: bool
    score_at: str
    wanted: int | None  # the trials asked for
    parameters: list[str]
    trials: list[Trial] = field(default_factory=list)
    pictures: list[tuple[str, str, bytes]] = field(default_factory=list)  # (kind, caption, PNG)
    notes: list[str] = field(default_factory=list)
    problem: str = ""  # why its study cannot be read

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ranked(self) -> list[Trial]:
        """The completed trials, best first."""
        done = [t for t in self.trials if t.state == "complete" and t.value is not None]
        return sorted(done, key=lambda t: -t.value if self.higher_is_better else t.value)

    @property
    def counts(self) -> dict[str, int]:
        states = [t.state for t in self.trials]
        return {state: states.count(state) for state in dict.fromkeys(states)}

    @property
    def confirm_dir(self) -> Path | None:
        folder = self.path / "confirm"
        return folder if folder.is_dir() else None


def find_searches(path: Path) -> list[Path]:
    """``path`` if it is a search directory, else the search directories directly in it."""
    if is_search(path):
        return [path]
    return [p for p in sorted(path.iterdir()) if is_search(p)] if path.is_dir() else []


def read_search(root: Path) -> SearchReport:
    try:
        recorded = json.loads((root / SEARCH_FILE).read_text(encoding="utf-8"))
        table = recorded.get("search") or {}
    except (OSError, ValueError, AttributeError) as error:
        return SearchReport(root, "score", False, "last", None, [], problem=f"{root / SEARCH_FILE}: cannot read it ({error})")
    report = SearchReport(root, str(recorded.get("metric", "score")), bool(recorded.get("higher_is_better")),
                          str(table.get("score_at", "last")), table.get("trials"), [key for key in table if "." in key])
    try:
        study = _study(root, recorded)
    except SearchError as error:
        report.problem = str(error)
        return report
    report.trials = [_trial(trial, root, report.metric) for trial in study.get_trials(deepcopy=False)]
    report.parameters += [key for key in dict.fromkeys(k for t in report.trials for k in t.params)
                          if key not in report.parameters]
    report.pictures, report.notes = _pictures(study, report)
    return report


def _study(root: Path, recorded: dict[str, Any]):
    """The search's study, read-only when it is the search's own study.db."""
    storage = recorded.get("storage")
    if storage is None:
        database = root / "study.db"
        if not database.is_file():
            raise SearchError(f"{database}: missing, so the trials cannot be shown (their run directories still are)")
        storage = f"sqlite:///file:{quote(str(database.resolve()))}?mode=ro&uri=true"
    elif storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise SearchError(f"{storage}: missing, so the trials cannot be shown (their run directories still are)")
    module = optuna()
    name = str(recorded.get("study", root.name))
    try:
        return module.load_study(study_name=name, storage=storage)
    except Exception as error:  # SQLAlchemy's and the database drivers' errors alike
        where = recorded.get("storage") or root / "study.db"
        raise SearchError(f"{where}: cannot read the study {name} from it ({_first_line(error)})") from None


def _trial(trial, root: Path, metric: str) -> Trial:
    state = trial.state.name.lower()
    folder = trial.user_attrs.get("run_dir")
    note = str(trial.user_attrs.get("why", ""))
    if trial.user_attrs.get("abandoned"):
        note = "stopped before its run began; not counted"
    elif not note and state != "complete" and trial.intermediate_values:
        step = max(trial.intermediate_values)
        note = f"last reported {metric} {trial.intermediate_values[step]:.4g} at step {step}"
    return Trial(trial.number, state, trial.value if state == "complete" else None, dict(trial.params),
                 root / "trials" / folder if folder else None, note)


def _pictures(study, report: SearchReport) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """The optimisation history and the parameters' importances, or a line saying why not."""
    completed = len(report.ranked)
    if not completed:
        return [], ["no trial has completed yet: no optimisation history or importances to draw"]
    plots = optuna().visualization.matplotlib
    better = "higher" if report.higher_is_better else "lower"
    pictures, notes = [], []

    def history():
        from matplotlib.ticker import MaxNLocator

        axes = plots.plot_optimization_history(study, target_name=report.metric)
        axes.set_title(f"{report.metric} by trial ({better} is better)")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.figure.set_size_inches(7.5, 3.8)
        return axes

    try:
        pictures.append(("history", "optimisation history", _draw(history)))
    except Exception as error:  # a picture is never worth failing the report for
        notes.append(f"optimisation history: cannot draw it ({_first_line(error)})")
    why_not = _no_importances(report, completed)
    if why_not:
        return pictures, [*notes, why_not]

    def importances():
        axes = plots.plot_param_importances(study, evaluator=optuna().importance.PedAnovaImportanceEvaluator(),
                                            target_name=report.metric)
        axes.set_title("")
        axes.set_title(f"importance for {report.metric} (PED-ANOVA)", loc="left")
        axes.figure.set_size_inches(7.5, 1.6 + 0.45 * len(report.parameters))
        return axes

    try:
        pictures.append(("importance", "parameter importances", _draw(importances)))
    except Exception as error:
        notes.append(f"parameter importances: cannot compute them ({_first_line(error)})")
    return pictures, notes


def _no_importances(report: SearchReport, completed: int) -> str:
    """Why the importances are left out, or ""."""
    if len(report.parameters) < 2:
        return "parameter importances: left out (one parameter is searched: there is nothing to weigh it against)"
    if completed < IMPORTANCE_MIN_TRIALS:
        return (f"parameter importances: left out ({completed} completed trial{'s are' if completed != 1 else ' is'} "
                f"too few; they need {IMPORTANCE_MIN_TRIALS})")
    if not hasattr(optuna().importance, "PedAnovaImportanceEvaluator"):
        return "parameter importances: left out (they need Optuna 3.6 or later, for its PED-ANOVA evaluator)"
    return ""


def _draw(plot: Callable[[], Any]) -> bytes:
    """The figure ``plot`` draws with pyplot (as Optuna's plots do), as PNG. Its style
    (Optuna sets ggplot) and its figure are not left behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna().exceptions.ExperimentalWarning)
            figure = plot().figure
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
    return buffer.getvalue()


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
