"""Several runs of a batch at once: ``gankit run --jobs N`` in local processes, and
``gankit run --ray [ADDRESS]`` as Ray tasks (``gankit.ray_batch``).

Every run directory is made in batch order before any run starts, so a parallel batch
leaves the same directories a sequential one does (a run that fails to start gives its
number back). Each run trains in a worker exactly as ``gankit run`` would train it
(``train_job``) and sends its events back for the live display. The first stop request
(Ctrl-C) reaches every worker, which checkpoints at its next step; runs not yet begun
are skipped; a second request ends the workers at once. Every run is left resumable.
After a failed run, and without ``--keep-going``, no further run begins; those under way
finish.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gankit.batch import Outcome, attempt
from gankit.events import CheckpointSaved, EvalLogged, RunFinished, RunStarted, StepLogged
from gankit.rundir import LOCK

SENT = (RunStarted, StepLogged, EvalLogged, CheckpointSaved, RunFinished)
"""The events a worker sends back (samples stay with the run's exporters)."""


@dataclass(frozen=True)
class Job:
    """One run of the batch, as a worker gets it: the resolved recipe as a table (rebuilt
    with the worker's own plugins) and the directory made for it."""

    index: int
    name: str
    backend: str
    table: dict[str, Any]
    path: Path
    sweep: dict[str, Any]
    run_dir: Path
    cache_dir: Path
    cpus: float = 1.0
    gpus: float = 0.0
    trial: dict[str, Any] | None = None
    """A search's trial (``gankit.search.TrialLink``): the run reports its scores to the
    study and may be pruned."""
    resume_if_begun: bool = False
    """Continue the run in ``run_dir`` from its checkpoint if it had begun (a resumed search)."""

    def skipped(self, message: str = "not run") -> Outcome:
        return Outcome(self.name, "skipped", self.backend, message, sweep=self.sweep)

    def died(self, how: str) -> Outcome:
        """The outcome of a run whose worker ended without one (killed, out of memory, a lost node)."""
        if not (self.run_dir / "recipe.toml").is_file():
            return Outcome(self.name, "failed", self.backend, f"the worker training it {how} before it began",
                           sweep=self.sweep)
        return Outcome(self.name, "failed", self.backend,
                       f"the worker training it {how}; resume with: gankit run --resume {self.run_dir}",
                       run_dir=self.run_dir, sweep=self.sweep)


def make_jobs(recipes, runs_root: Path, cache_dir: Path, cpus: float | None = None,
              gpus: float | None = None) -> list[Job]:
    """A job per recipe, its run directory made now, in order. ``cpus``/``gpus`` (the
    command line) win over a recipe's ``[resources]``."""
    from gankit.rundir import RunDir

    jobs = []
    for index, recipe in enumerate(recipes):
        resources = recipe.resources
        jobs.append(Job(index, recipe.name, recipe.backend.name, recipe.as_dict(), recipe.path, recipe.sweep,
                        RunDir.create(runs_root, recipe.name).path.resolve(), cache_dir,
                        cpus if cpus is not None else (resources.cpus if resources else 1.0),
                        gpus if gpus is not None else (resources.gpus if resources else 0.0)))
    return jobs


def train_job(job: Job, send: Callable[[Any], None], should_stop: Callable[[], bool]) -> Outcome:
    """Train one job in this process, as ``gankit run`` trains a recipe; events and the
    data's messages go to ``send``."""
    from gankit.data import DataContext
    from gankit.plugins import load_registry
    from gankit.recipe import build_recipe
    from gankit.runner import run

    registry = load_registry()
    recipe = dataclasses.replace(build_recipe(job.table, job.path, registry), sweep=job.sweep)
    context = DataContext(job.cache_dir, warn=lambda text: send(("warn", text)), info=lambda text: send(("info", text)))
    listeners = [lambda event: send(event) if isinstance(event, SENT) else None]
    trial = None
    if job.trial is not None:
        from gankit.search import TrialLink

        trial = TrialLink(job.trial)
        listeners.append(trial.handle)
        should_stop = (lambda stop: lambda: stop() or trial.pruned)(should_stop)

    def start(recipe):
        if job.resume_if_begun and (job.run_dir / "recipe.toml").is_file():
            from gankit.runner import resume

            return resume(job.run_dir, registry, context=context, listeners=listeners, should_stop=should_stop)
        return run(recipe, runs_root=job.run_dir.parent, context=context, should_stop=should_stop, run_dir=job.run_dir,
                   listeners=listeners)

    try:
        outcome = attempt(recipe, start)
    except KeyboardInterrupt:  # stopped before it began
        return job.skipped()
    return trial.finish(outcome) if trial is not None else outcome


def unused(run_dir: Path) -> bool:
    """Whether a run directory made for a job holds nothing a run wrote."""
    return run_dir.is_dir() and all(entry.name == LOCK for entry in run_dir.iterdir())


def run_parallel(jobs: list[Job], engine, *, keep_going: bool, stop_requested: Callable[[], bool],
                 display, report: Callable[[Outcome], None]) -> list[Outcome]:
    """Run every job on ``engine`` (``LocalEngine`` or ``gankit.ray_batch.RayEngine``);
    the outcomes in batch order."""
    outcomes: dict[int, Outcome] = {}
    waiting = list(jobs)
    stopping = draining = False

    def finish(index: int, outcome: Outcome) -> None:
        nonlocal draining
        outcomes[index] = outcome
        report(outcome)
        if outcome.status not in ("completed", "skipped", "interrupted") and not keep_going and not draining:
            draining = True
            engine.drain()

    try:
        while len(outcomes) < len(jobs):
            if stop_requested() and not stopping:
                stopping = True
                engine.stop()
            if stopping or draining:
                for job in waiting:
                    finish(job.index, job.skipped())
                waiting = []
            while waiting and engine.has_room():
                engine.start(waiting.pop(0))
            for index, item in engine.poll(timeout=0.2):
                if isinstance(item, Outcome):
                    finish(index, item)
                elif isinstance(item, tuple):
                    display.message(index, *item)
                else:
                    display.handle(index, item)
    except BaseException:
        engine.abort()
        raise
    finally:
        engine.close()
        for job in jobs:
            if unused(job.run_dir):
                shutil.rmtree(job.run_dir, ignore_errors=True)
    return [outcomes[job.index] for job in jobs]


def _local_worker(job: Job, connection, stop, threads: int) -> None:
    """A local worker process: Ctrl-C is the parent's to handle (it passes on a stop). A
    parent that dies without one (SIGKILL) stops its workers too, each at its next step
    with a checkpoint, as a stop request would: nothing is left training for no one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # before torch is imported
    sending = threading.Lock()  # a plugin may warn from a thread of its own; a pipe takes one message at a time
    parent, orphaned = os.getppid(), threading.Event()

    def parent_gone() -> bool:
        if os.getppid() != parent:  # the parent died and this process was given to another
            orphaned.set()
        return orphaned.is_set()

    def send(item) -> None:
        if parent_gone():
            return
        with sending:
            try:
                connection.send(item)
            except OSError:  # BrokenPipeError: no one reads any more
                orphaned.set()

    send(train_job(job, send, lambda: bool(stop.value) or parent_gone()))
    connection.close()


class LocalEngine:
    """Each run in a fresh process of its own (spawned, so nothing of the parent's state
    is shared), at most ``jobs`` at once; each gets an equal share of the CPU threads.

    Each worker writes to a pipe of its own and reads the stop flag without a lock, so a
    worker killed mid-write (SIGKILL, the OOM killer) holds nothing the others need: a
    shared ``multiprocessing.Queue`` or ``Event`` would leave its lock taken for good.
    Its pipe's end of file tells the parent it is gone, after every message it sent."""

    def __init__(self, jobs: int):
        import multiprocessing

        self.jobs = jobs
        self.context = multiprocessing.get_context("spawn")
        self.stop_flag = self.context.RawValue("b", 0)
        self.running: dict[int, tuple[Job, Any, Any]] = {}
        self.answered: set[int] = set()
        self.threads = max(1, (os.cpu_count() or 1) // jobs)

    def has_room(self) -> bool:
        return len(self.running) < self.jobs

    def capacity(self, cpus: float) -> int:
        return self.jobs

    def start(self, job: Job) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_local_worker, args=(job, writer, self.stop_flag, self.threads),
                                       name=f"gankit {job.run_dir.name}")
        process.start()
        writer.close()  # the worker's copy is the only one left: its end of file is the worker's end
        self.running[job.index] = (job, process, reader)

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        from multiprocessing.connection import wait

        by_reader = {reader: index for index, (_, _, reader) in self.running.items()}
        received = []
        for reader in wait(list(by_reader), timeout):
            index = by_reader[reader]
            job, process, _ = self.running[index]
            try:
                while True:
                    item = reader.recv()
                    received.append((index, item))
                    if isinstance(item, Outcome):
                        self.answered.add(index)
                    if not reader.poll():
                        break
            except (EOFError, OSError):  # the worker is gone
                reader.close()
                process.join()
                del self.running[index]
                if index not in self.answered:
                    code = process.exitcode
                    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                    received.append((index, job.died(how)))
        return received

    def drain(self) -> None:
        """No further run begins (the caller stops starting them); those under way finish."""

    def stop(self) -> None:
        self.stop_flag.value = 1

    def abort(self) -> None:
        for _, process, _ in self.running.values():
            process.kill()
        for _, process, _ in self.running.values():
            process.join()

    def close(self) -> None:
        for _, _, reader in self.running.values():
            reader.close()
