"""Where a search's trials, and then its confirmation runs, train: on the engine a batch
uses (``gankit.parallel.LocalEngine`` for one or ``--jobs N`` processes, or
``gankit.ray_batch.RayEngine``), asked for one trial at a time as room frees up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from gankit.batch import Outcome
from gankit.compare import CompareError, compare, read_score
from gankit.events import EvalLogged
from gankit.files import write_json
from gankit.parallel import Job
from gankit.recipe import build_recipe
from gankit.rundir import RunDir
from gankit.search import SEARCH_FILE, Search, existing_run, optuna, trial_name

CONFIRM_INDEX = 1_000_000
"""Job numbers of the confirmation runs start here, above any trial's number."""


def drive(engine, next_job: Callable[[int], Job | None], on_outcome: Callable[[Job, Outcome], None],
          stop_requested: Callable[[], bool], show: Callable[[str, str], None]) -> bool:
    """Keep ``engine`` busy with ``next_job(running)`` until it gives no more and every
    job has ended. True if a stop request ended it early (the running jobs checkpointed)."""
    running: dict[int, Job] = {}
    stopping = False
    try:
        while True:
            if stop_requested() and not stopping:
                stopping = True
                engine.stop()
            exhausted = stopping
            while not stopping and engine.has_room():
                job = next_job(len(running))
                if job is None:
                    exhausted = True
                    break
                running[job.index] = job
                engine.start(job)
            if not running and exhausted:
                return stopping
            for index, item in engine.poll(timeout=0.2):
                if isinstance(item, Outcome):
                    on_outcome(running.pop(index), item)
                elif isinstance(item, tuple):
                    show(*item)
                elif isinstance(item, EvalLogged):
                    scores = ", ".join(f"{key} {value:.4g}" for key, value in item.values.items())
                    show("info", f"{running[index].run_dir.name}: step {item.step}: {scores}")
    except BaseException:
        engine.abort()
        raise


class SearchRun:
    """One session of a search: resumes what a previous one left running, asks the study
    for new trials until ``trials`` have ended, then confirms the best over seeds."""

    def __init__(self, search: Search, registry, cache_dir: Path, show: Callable[[str, str], None],
                 resources: tuple[float | None, float | None] = (None, None)):
        self.search, self.registry, self.cache_dir, self.show = search, registry, cache_dir, show
        self.cpus, self.gpus = resources
        self.study = search.study()
        self.trial_ids: dict[int, int] = {}
        self.outcomes: list[Outcome] = []

    def _job(self, index: int, data: dict[str, Any], folder: Path, name: str, sweep: dict[str, Any],
             trial: dict[str, Any] | None = None) -> Job:
        recipe = build_recipe(data, self.search.recipe_path, self.registry)
        run_dir = existing_run(folder, name) or RunDir.create(folder, name).path
        resources = recipe.resources
        return Job(index, recipe.name, recipe.backend.name, recipe.as_dict(), self.search.recipe_path, sweep,
                   run_dir.resolve(), self.cache_dir,
                   self.cpus if self.cpus is not None else (resources.cpus if resources else 1.0),
                   self.gpus if self.gpus is not None else (resources.gpus if resources else 0.0),
                   trial=trial, resume_if_begun=True)

    # Trials.

    def _set(self, number: int, key: str, value: Any) -> None:
        optuna().trial.Trial(self.study, self.trial_ids[number]).set_user_attr(key, value)

    def _left_running(self) -> list[Job]:
        """The trials a killed or stopped session left running: each continues from its run's
        checkpoint, or is told its result if its run had ended; one killed before its run
        directory was recorded never began, and is set aside without counting."""
        jobs = []
        for trial in self.study.get_trials(deepcopy=False, states=(optuna().trial.TrialState.RUNNING,)):
            self.trial_ids[trial.number] = trial._trial_id
            folder = trial.user_attrs.get("run_dir")
            if folder is None:
                self._set(trial.number, "abandoned", True)
                self.study.tell(trial.number, state=optuna().trial.TrialState.FAIL)
                continue
            run_dir = self.search.root / "trials" / folder
            status = _status(run_dir)
            if status in ("completed", "pruned"):
                self._tell(trial.number, run_dir, status, "")
                continue
            data = self.search.trial_data(trial.params)
            jobs.append(self._job(trial.number, data, run_dir.parent, trial_name(self.search, trial.number),
                                  trial.params, self.search.link(trial._trial_id)))
            self.show("info", f"trial {trial.number}: continues {run_dir.name} from its checkpoint")
        return jobs

    def _new_trial(self) -> Job:
        trial = self.study.ask()
        self.trial_ids[trial.number] = trial._trial_id
        params = {parameter.key: parameter.suggest(trial) for parameter in self.search.config.parameters}
        job = self._job(trial.number, self.search.trial_data(params), self.search.root / "trials",
                        trial_name(self.search, trial.number), params, self.search.link(trial._trial_id))
        trial.set_user_attr("run_dir", job.run_dir.name)
        shown = ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                          for key, value in params.items())
        self.show("info", f"trial {trial.number} ({job.run_dir.name}): {shown}")
        return job

    def _tell(self, number: int, run_dir: Path, status: str, message: str) -> str:
        """Give the study a trial's result; what happened, in words."""
        states = optuna().trial.TrialState
        if status == "completed":
            score = read_score(run_dir, self.search.config.score_at, self.search.metric)
            if score.value is not None:
                self.study.tell(number, score.value)
                return f"{self.search.metric} {score.value:.4g}"
            self._set(number, "why", score.why)
            self.study.tell(number, state=states.FAIL)
            return f"failed: {score.why}"
        if status == "pruned":
            self.study.tell(number, state=states.PRUNED)
            return message or "pruned"
        self._set(number, "why", f"{status}: {message}")
        self.study.tell(number, state=states.FAIL)
        return f"{status}: {message}"

    def _trial_ended(self, job: Job, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.status in ("interrupted", "skipped"):
            self.show("warn", f"trial {job.index} stopped; it continues when the search is resumed")
            return
        said = self._tell(job.index, job.run_dir, outcome.status, outcome.message)
        best = self.search.best(self.study)
        lead = f" (best: trial {best[0].number}, {best[0].value:.4g})" if best else ""
        self.show("info", f"trial {job.index}: {said}{lead}")

    def trials(self, engine, stop_requested: Callable[[], bool]) -> bool:
        """Run trials until the search has its number; True if stopped early."""
        waiting = self._left_running()
        wanted = self.search.config.trials

        at_once = engine.capacity(self.cpus or 1.0)

        def next_job(running: int) -> Job | None:
            if waiting:
                return waiting.pop(0)
            if running < at_once and self.search.counted(self.study) + running < wanted:
                return self._new_trial()
            return None

        return drive(engine, next_job, self._trial_ended, stop_requested, self.show)

    # Confirmation.

    def confirm(self, engine, stop_requested: Callable[[], bool]) -> bool:
        """The best ``top`` configurations, and the recipe as written, once per seed, in
        ``confirm/``; runs that completed in an earlier session are not repeated."""
        config, folder = self.search.config, self.search.root / "confirm"
        chosen = [(f"t{t.number:04d}", t.params) for t in self.search.best(self.study)[:config.confirm_top]]
        if not chosen:
            self.show("warn", "no trial completed, so there is nothing to confirm")
            return False
        jobs = []
        for label, params in [("baseline", {}), *chosen]:
            for seed in config.confirm_seeds:
                name = f"{self.search.name}-{label}-seed{seed}"
                found = existing_run(folder, name)
                if found is not None and _status(found) == "completed":
                    continue
                index = CONFIRM_INDEX + len(jobs)
                jobs.append(self._job(index, self.search.trial_data(params, seed), folder, name,
                                      {**params, "seed": seed}))
        if jobs:
            self.show("info", f"confirming: {len(jobs)} runs in {folder}")
        return drive(engine, lambda running: jobs.pop(0) if jobs else None,
                     lambda job, outcome: self.outcomes.append(outcome), stop_requested, self.show)

    def record(self) -> dict[str, Any]:
        """What the search found, into search.json: the best trial, and the confirmation's ranking."""
        path = self.search.root / SEARCH_FILE
        recorded = json.loads(path.read_text())
        best = self.search.best(self.study)
        states = [t.state.name for t in self.study.get_trials(deepcopy=False)]
        recorded["trials"] = {state.lower(): states.count(state) for state in sorted(set(states))}
        if best:
            recorded["best"] = {"trial": best[0].number, "value": best[0].value, "params": best[0].params,
                                "run_dir": best[0].user_attrs.get("run_dir")}
        confirm = self.search.root / "confirm"
        if confirm.is_dir():
            try:
                recorded["confirmed"] = compare([confirm]).as_dict()
            except CompareError as error:
                recorded["confirmed"] = {"error": str(error)}
        write_json(path, recorded)
        return recorded


def _status(run_dir: Path) -> str | None:
    return (RunDir(run_dir).read_summary() or {}).get("status")
