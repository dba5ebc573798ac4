"""A run directory kept safe: proven writable before anything is loaded, locked while a
process trains it, and repaired when a resume follows a kill (metrics.jsonl lines past
the checkpoint, a torn last line)."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from gankit.files import write_text
from gankit.training import no_space_left


class RunError(Exception):
    """A run could not start. The message is one line that says what to fix."""


def writable_root(path: Path, option: str = "--runs-dir") -> Path:
    """The folder that will hold ``path`` (itself, or its nearest existing parent), proven
    writable by creating a file in it: a read-only disk, a file in the way or a folder
    without permission is refused (naming ``option``) before anything is loaded."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise RunError(f"{option} {path}: {folder} is a file, not a folder; choose another {option}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise RunError(f"{option} {path}: cannot write in {folder} ({error.strerror or error}); "
                       f"choose another {option}") from None
    return folder


def check_space(folder: Path, trainer) -> None:
    """Refuse to start when ``folder`` cannot hold even one checkpoint (weights and two
    optimizer moments in float32, roughly what every backend writes)."""
    needed = 3 * 4 * sum(trainer.parameter_counts().values())
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise RunError(f"no space left on device: {folder} has {free / 2**20:.1f} MiB free and a checkpoint of "
                       f"this run needs about {needed / 2**20:.1f} MiB; free some space or choose another --runs-dir")


LOCK = ".lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold the run's lock for the block: a second process training the same run is refused."""
    from filelock import FileLock, Timeout

    lock = FileLock(run_dir / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(f"{run_dir} is in use by another gankit process (training or resuming it); "
                       "wait for that one to end") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def writing(run_dir: Path):
    """Before training: a write that fails (a full or read-only disk) is a RunError."""
    try:
        yield
    except OSError as error:
        reason = "no space left on device" if no_space_left(error, run_dir) else (error.strerror or str(error))
        raise RunError(f"cannot write {error.filename or run_dir}: {reason}") from None


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the whole lines of metrics.jsonl up to ``step``, the checkpoint a resume
    starts from: after a kill, later lines would be logged twice, and a torn last line is
    dropped."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if kept != lines:
        write_text(path, "".join(line if line.endswith("\n") else line + "\n" for line in kept))


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None
