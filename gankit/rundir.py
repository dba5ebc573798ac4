"""A run directory as one object: where each of its files lives, its number, its
checkpoints (save, list, prune, resolve, verify, load) and ``best``. Nothing else in
gankit spells these paths.

It also keeps a run safe: proven writable before anything is loaded, locked while a
process trains it, and repaired when a resume follows a kill (metrics.jsonl lines past
the checkpoint, a torn last line).

```
runs/00003-dcgan_mnist/
  recipe.toml  metrics.jsonl  curves.png  summary.json  eval.json  progress.gif
  samples/step_00000500.png ...
  checkpoints/step_00000500/ ...  checkpoints/best/
```
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from gankit.backend import CheckpointError, Trainer
from gankit.data import DataSpec, sha256_of
from gankit.errors import GankitError
from gankit.files import atomic_directory, follow_umask, remove_directory, write_json, write_text

__all__ = ["RunDir", "RunError", "read_meta", "verify_checkpoint", "write_checkpoint"]

MANIFEST = "manifest.json"
"""In every checkpoint: the sha256 of each other file in it, written last."""
META = "meta.json"
"""In every checkpoint: its step and epoch (and, for ``best``, its scores)."""
LOCK = ".lock"
NUMBERED = re.compile(r"^(\d{5})-.")
STEP = re.compile(r"^step_(\d+)$")


class RunError(GankitError):
    """A run could not start, or a run directory cannot be used. The message is one line
    that says what to fix."""


@dataclass(frozen=True)
class RunDir:
    """One run's directory. Path-like (``os.fspath``, ``/``), so an exporter written for a
    plain path keeps working."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, other) -> Path:
        return self.path / other

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def unnumbered(self) -> str:
        """The folder's name without its number: ``00003-dcgan_mnist`` is ``dcgan_mnist``."""
        return self.name.split("-", 1)[1] if NUMBERED.match(self.name) else self.name

    # The layout.

    @property
    def recipe(self) -> Path:
        """The fully resolved recipe, with gankit's and the plugins' versions."""
        return self.path / "recipe.toml"

    @property
    def metrics(self) -> Path:
        """One JSON line per logged step and per evaluation."""
        return self.path / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        """The sample grids, ``step_00000500.png`` (the png exporter's)."""
        return self.path / "samples"

    def sample_grid(self, step: int) -> Path:
        return self.samples / f"step_{step:08d}.png"

    def sample_grids(self) -> list[Path]:
        """The sample grids written so far, in step order."""
        return sorted(self.samples.glob("step_*.png"))

    @property
    def progress_gif(self) -> Path:
        return self.path / "progress.gif"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def eval(self) -> Path:
        """How each score was computed: ``gankit evaluate`` and a recipe's ``[eval]``."""
        return self.path / "eval.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        """The checkpoint with the best score so far (a recipe's ``[eval]``)."""
        return self.checkpoints / "best"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}"

    # Numbering.

    @classmethod
    def create(cls, runs_root: Path, name: str) -> RunDir:
        """Create ``runs_root/NNNNN-name``, one past the highest number there."""
        runs_root.mkdir(parents=True, exist_ok=True)
        number = max((int(run.name[:5]) for run in cls.numbered(runs_root)), default=-1) + 1
        while True:
            path = runs_root / f"{number:05d}-{name}"
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                number += 1

    @classmethod
    def numbered(cls, runs_root: Path) -> list[RunDir]:
        """The ``NNNNN-name`` folders in ``runs_root``, by number."""
        if not runs_root.is_dir():
            return []
        return [cls(p) for p in sorted(runs_root.iterdir()) if NUMBERED.match(p.name) and p.is_dir()]

    @classmethod
    def latest(cls, runs_root: Path) -> RunDir | None:
        """The highest-numbered run in ``runs_root`` (``--resume latest``), if any."""
        runs = cls.numbered(runs_root)
        return runs[-1] if runs else None

    @classmethod
    def found_in(cls, folder: Path) -> list[RunDir]:
        """The run directories directly inside ``folder`` (a batch's --runs-dir), by name."""
        return [cls(p) for p in sorted(folder.iterdir()) if cls(p).is_run()] if folder.is_dir() else []

    def is_run(self) -> bool:
        return self.recipe.is_file()

    def is_empty(self) -> bool:
        """Whether it holds nothing but the lock: a run stopped before it began."""
        return self.path.is_dir() and not [p for p in self.path.iterdir() if p.name != LOCK]

    def not_a_run(self, runs_root: Path | None = None) -> str | None:
        """None for a run directory; else one line: what the path is, and the runs to pass
        instead (in the folder itself, beside it, or in ``runs_root``; the newest first)."""
        if self.is_run():
            return None
        path = self.path
        if not path.exists():
            what = f"{path} does not exist"
        elif not path.is_dir():
            what = f"{path} is a file, not a run directory"
        elif self.is_empty():
            what = f"{path} is empty (the run was stopped before it began; remove it with: rm -r {path})"
        else:
            what = f"{path} is a folder but not a gankit run (it has no recipe.toml)"
        for folder in dict.fromkeys([path, path.parent, *([runs_root] if runs_root is not None else [])]):
            runs = [run for run in reversed(RunDir.numbered(folder)) if run.is_run()] if folder.is_dir() else []
            if runs:
                shown = ", ".join(str(run) for run in runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
                return f"{what}; pass a run directory: the runs in {folder}, newest first, are {shown}"
        return f"{what}; pass a run directory such as runs/00003-dcgan_mnist (gankit run RECIPE makes one)"

    def spec(self) -> DataSpec:
        """The data's shape, recorded in recipe.toml, so networks can be rebuilt without the data."""
        from gankit.recipe import read_toml

        if problem := self.not_a_run():
            raise RunError(problem)
        table = read_toml(self.recipe).get("gankit", {}).get("data_spec")
        if not isinstance(table, dict):
            raise RunError(f"{self.recipe}: no [gankit.data_spec]; is this a gankit run directory?")
        return DataSpec(**table)

    # Checkpoints.

    def list_checkpoints(self) -> list[Path]:
        """The ``step_N`` checkpoint folders, oldest first (temporary folders and ``best``
        are skipped). Listed is not proven whole: each is verified before use, and one that
        does not verify (a file missing, meta.json included) is reported, never skipped."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.iterdir() if STEP.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(STEP.match(p.name)[1]))

    def last_good_checkpoint(self) -> Path | None:
        """The newest checkpoint that verifies, or None."""
        for checkpoint in reversed(self.list_checkpoints()):
            try:
                return verify_checkpoint(checkpoint)
            except CheckpointError:
                continue
        return None

    def save_checkpoint(self, trainer: Trainer, step: int, meta: dict[str, Any], keep: int | None = None) -> Path:
        """Write ``checkpoints/step_N`` atomically, then keep only the last ``keep`` of them."""
        path = write_checkpoint(trainer, self.checkpoint(step), {"step": step, **meta})
        if keep is not None:
            self.prune(keep)
        return path

    def prune(self, keep: int) -> None:
        """Delete the step checkpoints older than the newest ``keep`` that verify (``best`` is
        never pruned). One that does not verify is never deleted, and never counts as kept:
        good checkpoints are not thrown away in favour of a damaged one."""
        kept = 0
        for checkpoint in reversed(self.list_checkpoints()):
            try:
                verify_checkpoint(checkpoint)
            except CheckpointError:
                continue
            if kept < keep:
                kept += 1
            else:
                remove_directory(checkpoint)

    def save_best(self, trainer: Trainer, meta: dict[str, Any]) -> Path:
        return write_checkpoint(trainer, self.best, meta)

    def best_meta(self) -> dict[str, Any] | None:
        """What ``best`` records (step, epoch, scores), or None if there is none yet."""
        try:
            return read_meta(self.best)
        except CheckpointError:
            return None

    def resolve_checkpoint(self, name: str | None = None) -> Path:
        """The last checkpoint, or the one named: ``best``, ``step_00000500`` or a path. Not
        yet verified: a damaged one is named when it is loaded, never passed over."""
        if name is None:
            found = self.list_checkpoints()
            if not found:
                raise RunError(f"{self.path}: no checkpoint yet; train the run first")
            return found[-1]
        for candidate in (self.checkpoints / name, Path(name)):
            if _looks_like_checkpoint(candidate):
                return candidate
        folder = self.checkpoints
        known = sorted(p.name for p in folder.iterdir() if _looks_like_checkpoint(p)) if folder.is_dir() else []
        raise RunError(f"--checkpoint {name}: no such checkpoint in {folder} (known: {', '.join(known) or 'none'})")

    @classmethod
    def weights_source(cls, path: Path) -> tuple[Path, RunDir | None]:
        """What ``path`` names as the weights to start another run from (``train.init_from``):
        a run directory's last checkpoint, or a checkpoint folder itself (``step_N``, ``best``),
        and the run it belongs to (None for a checkpoint folder outside a run); a RunError
        otherwise. Not yet verified."""
        path = Path(path).expanduser()
        run = cls(path)
        if run.is_run():
            found = run.list_checkpoints()
            if not found:
                raise RunError(f"{path}: the run has no checkpoint yet; train it first, or name a run that has one")
            return found[-1], run
        if _looks_like_checkpoint(path):
            owner = cls(path.parent.parent)
            return path, owner if path.parent.name == "checkpoints" and owner.is_run() else None
        raise RunError(f"{path}: neither a run directory (with a recipe.toml) nor a checkpoint of one; "
                       "give runs/NNNNN-name or runs/NNNNN-name/checkpoints/step_N (or best)")

    def load_checkpoint(self, trainer: Trainer, name: str | None = None, *, generator_only: bool = False,
                        accept: Callable[[dict[str, Any]], None] = lambda meta: None) -> tuple[Path, dict[str, Any]]:
        """Verify a checkpoint (``resolve_checkpoint(name)``), let ``accept`` refuse it by
        its meta (with a RunError), and load it into ``trainer``; its path and meta. A
        damaged one is a RunError that points at the newest earlier one that verifies and
        loads; nothing is ever deleted."""
        chosen = self.resolve_checkpoint(name)

        def load(path: Path) -> None:
            trainer.load(path, generator_only=generator_only)

        try:
            meta = read_meta(verify_checkpoint(chosen))
            accept(meta)
            load(chosen)
        except CheckpointError as error:
            raise RunError(self._damaged(error, chosen, load)) from None
        return chosen, meta

    def _damaged(self, error: CheckpointError, damaged: Path, load: Callable[[Path], None]) -> str:
        checkpoints = self.list_checkpoints()
        if damaged not in checkpoints:
            return str(error)
        index = checkpoints.index(damaged)
        for candidate in reversed(checkpoints[:index]):
            try:
                load(verify_checkpoint(candidate))
            except CheckpointError:
                continue
            found = f"{error}; the newest earlier checkpoint that verifies and loads is {candidate}"
            if damaged != checkpoints[-1]:
                return f"{found}: pass --checkpoint {candidate.name}"
            newer = " and ".join(str(p) for p in checkpoints[checkpoints.index(candidate) + 1:])
            return f"{found}: delete {newer} to use it"
        names = ", ".join(p.name for p in checkpoints[:index])
        earlier = (f"none of the {index} earlier checkpoint(s) verifies and loads with this recipe.toml either "
                   f"({names})" if index else "there is no earlier checkpoint to use instead")
        return f"{error}; {earlier}; nothing was deleted"

    # Keeping it safe.

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock for the block: a second process training the same run is
        refused. The lock is an ``flock`` on ``.lock``, which the block removes however it
        ends (completed, failed, interrupted), so a finished run leaves none behind; a
        killed process leaves it, unlocked, and the next one takes it over."""
        import fcntl

        path = self.path / LOCK
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
                    raise RunError(f"{self.path} is in use by another gankit process (training or resuming it); "
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
    def writing(self) -> Iterator[None]:
        """Before training: a write that fails (a full or read-only disk) is a RunError."""
        try:
            yield
        except OSError as error:
            reason = "no space left on device" if no_space_left(error, self.path) else (error.strerror or str(error))
            raise RunError(f"cannot write {error.filename or self.path}: {reason}") from None

    def read_summary(self) -> dict[str, Any] | None:
        """What summary.json records (written when a run ends), or None if it is missing or unreadable."""
        try:
            summary = json.loads(self.summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return summary if isinstance(summary, dict) else None

    def logged_at(self, step: int) -> dict[str, float]:
        """The values metrics.jsonl logged for training step ``step`` (its first line of that
        step; an evaluation's line comes after it), less the step, epoch and speed."""
        if not self.metrics.is_file():
            return {}
        for line in self.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            if _step_of(line) == step:
                record = json.loads(line)
                return {k: v for k, v in record.items() if k not in ("step", "epoch", "images_per_sec", "lr_g", "lr_d")
                        and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {}

    def truncate_metrics(self, step: int) -> list[int]:
        """Keep only the whole lines of metrics.jsonl up to ``step``, the checkpoint a resume
        starts from: after a kill, later lines would be logged twice, and a torn last line is
        dropped. Returns the numbers (from 1) of the other lines dropped because they do not
        read (a damaged file), for the resume to say so."""
        if not self.metrics.is_file():
            return []
        lines = self.metrics.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
        if kept != lines:
            write_text(self.metrics, "".join(line if line.endswith("\n") else line + "\n" for line in kept))
        return [number for number, line in enumerate(lines, 1)
                if _step_of(line) is None and (number < len(lines) or line.endswith("\n"))]


def _looks_like_checkpoint(path: Path) -> bool:
    """A folder with a meta.json or a manifest, or named ``step_N`` in a run's checkpoints."""
    if not path.is_dir():
        return False
    named = STEP.match(path.name) is not None and path.parent.name == "checkpoints"
    return named or (path / META).is_file() or (path / MANIFEST).is_file()


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def read_meta(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint / META).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(checkpoint / META, error) from None


def write_checkpoint(trainer: Trainer, path: Path, meta: dict[str, Any]) -> Path:
    """Save ``trainer`` into the checkpoint folder ``path`` atomically: its files, ``meta``
    as meta.json, and last the manifest of every file's sha256. A full disk is an OSError
    with errno ENOSPC whatever the framework raised, and leaves no folder behind."""
    try:
        with atomic_directory(path) as staging:
            try:
                trainer.save(staging)
                follow_umask(staging)
                write_json(staging / META, meta)
                files = sorted(p for p in staging.rglob("*") if p.is_file())
                write_json(staging / MANIFEST,
                           {"sha256": {p.relative_to(staging).as_posix(): sha256_of(p) for p in files}})
            except Exception as error:
                # Judged while what was written still fills the disk: removing it frees the space.
                if no_space_left(error, staging):
                    raise OSError(errno.ENOSPC, "no space left on device", str(path)) from error
                raise
    except Exception as error:
        if no_space_left(error, path.parent):
            raise OSError(errno.ENOSPC, "no space left on device", str(path)) from error
        raise
    return path


def verify_checkpoint(checkpoint: Path) -> Path:
    """Raise CheckpointError naming the file unless every file the manifest lists is there
    with its recorded sha256."""
    manifest = checkpoint / MANIFEST
    try:
        listed = json.loads(manifest.read_text())["sha256"]
        if not isinstance(listed, dict):
            raise ValueError("no table of sha256 digests")
    except FileNotFoundError:
        raise CheckpointError(manifest, "missing, so the checkpoint cannot be proven whole") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(manifest, error) from None
    for name, expected in sorted(listed.items()):
        file = checkpoint / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not file.is_file():
            raise CheckpointError(file, "missing")
        if sha256_of(file) != expected:
            raise CheckpointError(file, "damaged: its sha256 differs from the one recorded when it was saved")
    return checkpoint


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
