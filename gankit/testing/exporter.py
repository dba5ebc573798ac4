"""``check_exporter``: an exporter survives a run as a user's run goes: stopped with
Ctrl-C partway, resumed in a process that is then killed, and resumed to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w

from gankit.data import DataContext
from gankit.errors import GankitError
from gankit.events import RunStarted, StepLogged
from gankit.plugins import load_registry
from gankit.registry import Registry
from gankit.testing.common import component, cpu
from gankit.testing.fixtures import FIXTURE_ARCHITECTURE, FIXTURE_DATASET, installed_backends, with_fixtures


ENVIRONMENT = dict(os.environ)
"""The environment as it was when the kit was imported, before any exporter ran: the
killed session's process starts with it, as a user's fresh process would, so that
nothing an exporter's library left in ``os.environ`` (a tracker's service address) is
shared with it."""

KILLED_SESSION = """
import os, signal, sys
from pathlib import Path

from gankit.data import DataContext
from gankit.events import StepLogged
from gankit.plugins import load_registry
from gankit.runner import resume
from gankit.testing.fixtures import with_fixtures

run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])


def kill(event):
    if isinstance(event, StepLogged) and event.step >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


resume(run_dir, with_fixtures(load_registry()), context=DataContext(warn=print, info=print), listeners=[kill])
"""
"""Resume the run in ``argv[1]`` and die by SIGKILL once step ``argv[2]`` is logged."""


class _CtrlC:
    """Stops a run as Ctrl-C does (``gankit run``'s stop flag: the runner's ``should_stop``)
    once step ``stop_at`` is trained."""

    def __init__(self, stop_at: int):
        self.stop_at = stop_at
        self.logged: int | None = None
        """The last step logged (the start step before any); None before the loop starts."""

    def handle(self, event) -> None:
        if isinstance(event, (RunStarted, StepLogged)):
            self.logged = event.start_step if isinstance(event, RunStarted) else event.step

    def should_stop(self) -> bool:
        """Asked after each step is trained, before it is logged (every step is: log_every = 1)."""
        return self.logged is not None and self.logged + 1 >= self.stop_at


def check_exporter(name: str, directory: Path, params: dict[str, Any] | None = None, *,
                   with_exporters: Iterable[dict[str, Any]] = (), steps: int = 4, backend: str | None = None,
                   registry: Registry | None = None) -> Path:
    """A real run in ``directory / "runs"`` with exporter ``name`` (and ``params``) after
    ``with_exporters`` (e.g. ``[{"use": "png"}]`` for one that reads the png grids): the
    kit's small dense network trained on its labelled squares for ``steps`` steps (at least 2) of 16
    images on ``backend`` (default: the first installed), logging every step. The run is
    stopped at ``steps // 2`` as Ctrl-C stops it (a checkpoint, then ``RunFinished`` with
    status ``interrupted``); resumed in a process of its own that is killed (SIGKILL) once
    step ``steps - 1`` is logged (no checkpoint since ``steps // 2``, no end event: those
    steps are trained again); and resumed, by a fresh exporter, to the end. An exporter
    failure, even at the end, fails the check. Returns the run's directory for your own
    assertions on its files; ``directory`` may hold earlier runs. The killed process finds
    the plugins as installed (entry points), so with ``registry`` given, or ``steps < 3``,
    that session is left out."""
    from gankit.recipe import load_recipe
    from gankit.runner import resume, run

    if steps < 2:
        raise ValueError(f"check_exporter needs steps >= 2 to interrupt and resume a run (got {steps})")
    given, registry = registry, with_fixtures(registry or load_registry())
    backend = backend or installed_backends(registry)[0]
    recipe = {
        "name": f"check-{name}",
        "dataset": {"use": FIXTURE_DATASET},
        "architecture": {"use": FIXTURE_ARCHITECTURE},
        "backend": {"use": backend, **cpu(component(registry, "backend", backend))},
        "train": {"steps": steps, "batch_size": 16, "log_every": 1, "checkpoint_every": steps,
                  "on_exporter_error": "stop"},
        "export": [*with_exporters, {"use": name, **(params or {})}],
    }
    path = directory / f"check-{name}.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(recipe))
    warnings: list[str] = []
    context = DataContext(warn=warnings.append, info=lambda message: None)

    def session(what: str, start, status: str, step: int) -> Path:
        """Run a session; it must end with ``status`` at ``step``, and no exporter may fail
        (not even at the end, which the status cannot show)."""
        try:
            finished = (result := start()).finished
        except GankitError as error:
            raise AssertionError(f"{what}: {error}") from None
        assert (finished.status, finished.step) == (status, step), \
            f"{what} ended {finished.status} at step {finished.step}, not {status} at {step}: {finished.message}" \
            + "".join(f"\n  warning: {warning}" for warning in warnings)
        failed = [warning for warning in warnings if "failed at step" in warning]
        assert not failed, f"{what}: {'; '.join(failed)}"
        return result.run_dir

    ctrl_c = _CtrlC(steps // 2)
    run_dir = session("the first session", lambda: run(load_recipe(path, [], registry), runs_root=directory / "runs",
                                                       context=context, listeners=[ctrl_c.handle],
                                                       should_stop=ctrl_c.should_stop), "interrupted", steps // 2)
    if given is None and steps >= 3:
        _killed_session(run_dir, steps - 1)
    session("the resumed session", lambda: resume(run_dir, registry, context=context), "completed", steps)
    return run_dir


def _killed_session(run_dir: Path, kill_at: int) -> None:
    """Resume the run in a fresh process that is killed once step ``kill_at`` is logged."""
    killed = subprocess.run([sys.executable, "-c", KILLED_SESSION, str(run_dir), str(kill_at)],
                            env={**ENVIRONMENT, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True,
                            text=True, start_new_session=True)
    if killed.returncode != -signal.SIGKILL:
        lines = [line for line in (killed.stdout + killed.stderr).splitlines() if line.strip()]
        raise AssertionError(f"the session resumed to be killed at step {kill_at} ended with status "
                             f"{killed.returncode}, not by the kill: {lines[-1] if lines else 'no output'}")
