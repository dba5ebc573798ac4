"""Keeping a run safe: its lock while a process trains it, writes proven possible before
anything is loaded, a full disk named as one, and metrics.jsonl repaired when a resume
follows a kill (lines past the checkpoint, a torn last line)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from gankit.files import write_text
from gankit.rundir import LOCK, RunDir, RunError

if TYPE_CHECKING:
    from gankit.backend import Trainer


@contextmanager
def lock(run: RunDir) -> Iterator[None]:
    """Hold the run's lock for the block: a second process training the same run is
    refused. The lock is an ``flock`` on ``.lock``, which the block removes however it
    ends (completed, failed, interrupted), so a finished run leaves none behind; a
    killed process leaves it, unlocked, and the next one takes it over."""
    import fcntl

    path = run.path / LOCK
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise RunError(f"cannot write {path} ({error.strerror or error}): a run is trained only where it can "
                           "be written; make the folder writable, or copy the run elsewhere") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunError(f"{run.path} is in use by another gankit process (training or resuming it); "
                               "wait for that one to end") from None
            raise RunError(f"cannot lock {path} ({error.strerror or error}); put the run on a file system "
                           "that supports locks, or copy it elsewhere") from None
        try:
            ours = os.fstat(handle).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            ours = False
        if ours:
            break
        os.close(handle)  # its holder removed it as it ended, between our open and our lock: take a new one
    try:
        yield
    finally:
        try:
            path.unlink()  # while still held: whoever opened this file before now finds it gone once locked
        except OSError:
            pass
        os.close(handle)


@contextmanager
def writing(run: RunDir) -> Iterator[None]:
    """Before training: a write that fails (a full or read-only disk) is a RunError."""
    try:
        yield
    except OSError as error:
        reason = "no space left on device" if no_space_left(error, run.path) else (error.strerror or str(error))
        raise RunError(f"cannot write {error.filename or run.path}: {reason}") from None


def logged_at(run: RunDir, step: int) -> dict[str, float]:
    """The values metrics.jsonl logged for training step ``step`` (its first line of that
    step; an evaluation's line comes after it), less the step, epoch and speed."""
    if not run.metrics.is_file():
        return {}
    for line in run.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        if _step_of(line) == step:
            record = json.loads(line)
            return {k: v for k, v in record.items() if k not in ("step", "epoch", "images_per_sec", "lr_g", "lr_d")
                    and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {}


def truncate_metrics(run: RunDir, step: int) -> list[int]:
    """Keep only the whole lines of metrics.jsonl up to ``step``, the checkpoint a resume
    starts from: after a kill, later lines would be logged twice, and a torn last line is
    dropped. Returns the numbers (from 1) of the other lines dropped because they do not
    read (a damaged file), for the resume to say so."""
    if not run.metrics.is_file():
        return []
    lines = run.metrics.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if kept != lines:
        write_text(run.metrics, "".join(line if line.endswith("\n") else line + "\n" for line in kept))
    return [number for number, line in enumerate(lines, 1)
            if _step_of(line) is None and (number < len(lines) or line.endswith("\n"))]


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def no_space_left(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` comes from a full disk: an ENOSPC or EDQUOT anywhere in its chain,
    the words in a framework's message, or (frameworks that hide the errno) a full ``folder``."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(cause) or "StorageFull" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def writable_root(path: Path, option: str = "--runs-dir") -> Path:
    """The folder that will hold ``path`` (itself, or its nearest existing parent), proven
    writable by creating a file in it: a read-only disk, a file in the way or a folder
    without permission is refused (naming ``option``) before anything is loaded."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():
            raise RunError(f"{option} {path}: {folder} is a symbolic link to nothing (its target is missing, or a "
                           f"loop of links); fix the link or choose another {option}")
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


def check_space(folder: Path, trainer: Trainer) -> None:
    """Refuse to start when ``folder`` cannot hold even one checkpoint (weights and two
    optimizer moments in float32, roughly what every backend writes)."""
    needed = 3 * 4 * sum(trainer.parameter_counts().values())
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise RunError(f"no space left on device: {folder} has {free / 2**20:.1f} MiB free and a checkpoint of "
                       f"this run needs about {needed / 2**20:.1f} MiB; free some space or choose another --runs-dir")
