"""What the ``mlflow`` and ``wandb`` exporters share: a run's events, delivered to a tracker
on a thread of its own, so that a tracker that is down, slow or refusing never holds the
training up for longer than the exporter's ``timeout``.

Values, scores and sample grids reach the tracker at each checkpoint and at the end, never
past the last checkpoint: a resumed run starts from that checkpoint, so it sends each step
once. The tracker's run id and the last step sent are kept in the run directory
(``<exporter>.json``), so a resumed run continues the same tracker run, and a resume from an
earlier checkpoint than the last one sent does not send those steps again. A process
killed while a delivery is under way may leave the rest of that delivery out.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import Field

from gankit.errors import GankitError
from gankit.events import CheckpointSaved, EvalLogged, RunFinished, RunStarted, SamplesReady, StepLogged
from gankit.files import write_json
from gankit.images import grid
from gankit.params import Every, Interval, Params
from gankit.rundir import RunDir


class TrackerParams(Params):
    images_every: Every = Field(Interval(500, "steps"),
                                description="log the fixed-noise grid this often (steps or epochs); 0: at the end only")
    timeout: float = Field(30.0, gt=0, le=3600,
                           description="seconds the run waits on the tracker at most, at the end (and when it falls behind)")


class TrackerError(GankitError):
    """The tracker fell behind or did not finish in time."""


@dataclass
class Row:
    """What one step sends: its scalars (``train/d_loss``, ``eval/fid``) and its sample grid."""

    step: int
    time: float = field(default_factory=time.time)
    values: dict[str, float] = field(default_factory=dict)
    image: Any = None


class Tracker(Protocol):
    """One tool's client; every method runs on the exporter's thread, in this order."""

    def start(self, run_id: str | None, settings: dict[str, Any]) -> str:
        """Open a new run (``run_id`` None) or continue that one; log ``settings``; its id."""

    def log(self, rows: list[Row]) -> None: ...

    def upload(self, files: list[Path]) -> None:
        """The run directory's pictures (curves.png, progress.gif), replacing earlier copies."""

    def finish(self, status: str) -> None: ...


def recipe_settings(run_dir: RunDir) -> dict[str, Any]:
    """The resolved recipe as dotted keys (``train.lr_g``, ``export.0.use``), less its name and provenance."""
    def flatten(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
        if isinstance(value, list) and any(isinstance(item, dict) for item in value):
            return {k: v for index, item in enumerate(value) for k, v in flatten(item, f"{prefix}{index}.").items()}
        return {prefix[:-1]: value}

    recipe = run_dir.read_recipe()
    return flatten({key: value for key, value in recipe.items() if key not in ("name", "gankit")}, "")


def in_a_batch(run_dir: RunDir) -> bool:
    """Whether the run is one of a sweep's or a search's (its recipe records the values it was given)."""
    return bool(run_dir.read_recipe().get("gankit", {}).get("sweep"))


class Background:
    """Calls run in turn on a daemon thread of their own. The first that raises ends the
    thread; its error is raised to whoever submits or waits next."""

    def __init__(self, name: str, timeout: float, capacity: int = 64):
        self.timeout = timeout
        """The exporter's: what the messages name (a call's own wait may be what is left of it)."""
        self.calls: queue.Queue = queue.Queue(capacity)
        self.error: Exception | None = None
        threading.Thread(target=self._work, name=f"gankit-{name}", daemon=True).start()

    def submit(self, call: Callable[[], Any] | None, timeout: float) -> None:
        """Queue ``call`` (None ends the thread), waiting up to ``timeout`` seconds for room."""
        self._raise()
        try:
            self.calls.put(call, timeout=timeout)
        except queue.Full:
            self._raise()
            raise TrackerError(f"the tracker has fallen behind by the exporter's timeout of {self.timeout:g} s") from None

    def wait(self, timeout: float) -> None:
        """Until every call submitted so far has run, ``timeout`` seconds at most; then end the thread."""
        done = threading.Event()
        self.submit(done.set, timeout)
        finished = done.wait(timeout)
        try:
            self.calls.put_nowait(None)
        except queue.Full:
            pass  # still busy: it is a daemon, and goes with the process
        self._raise()
        if not finished:
            raise TrackerError(f"the tracker had not finished after the exporter's timeout of {self.timeout:g} s; "
                               "what it had not sent yet is left out")

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        while (call := self.calls.get()) is not None:
            try:
                call()
            except Exception as error:
                self.error = error
                return


class TrackerExporter:
    """Events to a ``Tracker``, through a ``Background`` thread (see the module's docstring)."""

    def __init__(self, name: str, params: TrackerParams, run_dir: RunDir, tracker: Tracker):
        self.name, self.params, self.run_dir, self.tracker = name, params, RunDir(run_dir), tracker
        self.sample_every = params.images_every
        self.state_file = self.run_dir / f"{name}.json"
        self.rows: dict[int, Row] = {}
        self.sent_before = 0
        """The last step an earlier session sent (the state file's ``sent_through``)."""
        self.worker: Background | None = None
        self.run_id: str | None = None  # the tracker's; set on the thread, as is sent_through
        self.sent_through = 0

    def handle(self, event) -> None:
        if isinstance(event, RunStarted):
            self._start()
        elif self.worker is None:
            return
        elif isinstance(event, RunFinished):
            deadline = time.monotonic() + self.params.timeout
            self._send(event.step, self.params.timeout)
            worker, self.worker = self.worker, None
            worker.submit(partial(self.tracker.finish, event.status), max(deadline - time.monotonic(), 0))
            worker.wait(max(deadline - time.monotonic(), 0))
        elif event.step <= self.sent_before:
            return  # an earlier session sent it: this one resumed from an earlier checkpoint
        elif isinstance(event, (StepLogged, EvalLogged)):
            prefix = "train" if isinstance(event, StepLogged) else "eval"
            self._row(event.step).values.update({f"{prefix}/{key}": float(value) for key, value in event.values.items()})
        elif isinstance(event, SamplesReady):
            self._row(event.step).image = grid(event.images, event.columns)
        elif isinstance(event, CheckpointSaved) and Path(event.path).parent == self.run_dir.checkpoints:
            self._send(event.step, self.params.timeout)  # not the best checkpoint: a resume starts from these alone

    def _start(self) -> None:
        state = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        self.sent_before, self.rows = int(state.get("sent_through", 0)), {}
        self.worker = Background(self.name, self.params.timeout)
        self.worker.submit(partial(self._open, state.get("run_id"), recipe_settings(self.run_dir)), self.params.timeout)

    def _row(self, step: int) -> Row:
        return self.rows.setdefault(step, Row(step))

    def _send(self, through: int, timeout: float) -> None:
        rows = [self.rows.pop(step) for step in sorted(self.rows) if step <= through]
        files = [path for path in (self.run_dir.curves, *self.run_dir.animations()) if path.is_file()]
        self.worker.submit(partial(self._deliver, rows, files, through), timeout)

    def _open(self, run_id: str | None, settings: dict[str, Any]) -> None:
        self.run_id = self.tracker.start(run_id, settings)
        self.sent_through = self.sent_before
        write_json(self.state_file, {"run_id": self.run_id, "sent_through": self.sent_through})

    def _deliver(self, rows: list[Row], files: list[Path], through: int) -> None:
        if rows:
            self.tracker.log(rows)
        if files:
            self.tracker.upload(files)
        self.sent_through = max(self.sent_through, through)
        write_json(self.state_file, {"run_id": self.run_id, "sent_through": self.sent_through})
