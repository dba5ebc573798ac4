"""A run's checkpoint store: saving (atomically, with a manifest of sha256 digests),
verifying, pruning, resolving a name, loading, ``best``, and the weights another run starts
from. Where the checkpoints live is ``gankit.rundir``'s; what is in one is the backend's.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any, Callable

from gankit.backend import CheckpointError, Trainer
from gankit.data import sha256_of
from gankit.files import atomic_directory, follow_umask, remove_directory, write_json
from gankit.rundir import MANIFEST, META, STEP, RunDir, RunError, read_meta
from gankit.safekeeping import no_space_left


def last_good(run: RunDir) -> Path | None:
    """The newest checkpoint that verifies, or None."""
    for checkpoint in reversed(run.list_checkpoints()):
        try:
            return verify_checkpoint(checkpoint)
        except CheckpointError:
            continue
    return None


def save(run: RunDir, trainer: Trainer, step: int, meta: dict[str, Any], keep: int | None = None) -> Path:
    """Write ``checkpoints/step_N`` atomically, then keep only the last ``keep`` of them."""
    path = write_checkpoint(trainer, run.checkpoint(step), {"step": step, **meta})
    if keep is not None:
        prune(run, keep)
    return path


def prune(run: RunDir, keep: int) -> None:
    """Delete the step checkpoints older than the newest ``keep`` that verify (``best`` is
    never pruned). One that does not verify is never deleted, and never counts as kept:
    good checkpoints are not thrown away in favour of a damaged one."""
    kept = 0
    for checkpoint in reversed(run.list_checkpoints()):
        try:
            verify_checkpoint(checkpoint)
        except CheckpointError:
            continue
        if kept < keep:
            kept += 1
        else:
            remove_directory(checkpoint)


def save_best(run: RunDir, trainer: Trainer, meta: dict[str, Any]) -> Path:
    return write_checkpoint(trainer, run.best, meta)


def best_meta(run: RunDir) -> dict[str, Any] | None:
    """What ``best`` records (step, epoch, scores), or None if there is none yet."""
    try:
        return read_meta(run.best)
    except CheckpointError:
        return None


def resolve(run: RunDir, name: str | None = None) -> Path:
    """The last checkpoint, or the one named: ``best``, ``step_00000500`` or a path. Not
    yet verified: a damaged one is named when it is loaded, never passed over."""
    if name is None:
        found = run.list_checkpoints()
        if not found:
            raise RunError(f"{run.path}: no checkpoint yet; train the run first")
        return found[-1]
    for candidate in (run.checkpoints / name, Path(name)):
        if looks_like_checkpoint(candidate):
            return candidate
    folder = run.checkpoints
    known = sorted(p.name for p in folder.iterdir() if looks_like_checkpoint(p)) if folder.is_dir() else []
    raise RunError(f"--checkpoint {name}: no such checkpoint in {folder} (known: {', '.join(known) or 'none'})")


def weights_source(path: Path) -> tuple[Path, RunDir | None]:
    """What ``path`` names as the weights to start another run from (``train.init_from``):
    a run directory's last checkpoint, or a checkpoint folder itself (``step_N``, ``best``),
    and the run it belongs to (None for a checkpoint folder outside a run); a RunError
    otherwise. Not yet verified."""
    path = Path(path).expanduser()
    run = RunDir(path)
    if run.is_run():
        found = run.list_checkpoints()
        if not found:
            raise RunError(f"{path}: the run has no checkpoint yet; train it first, or name a run that has one")
        return found[-1], run
    if looks_like_checkpoint(path):
        owner = RunDir(path.parent.parent)
        return path, owner if path.parent.name == "checkpoints" and owner.is_run() else None
    raise RunError(f"{path}: neither a run directory (with a recipe.toml) nor a checkpoint of one; "
                   "give runs/NNNNN-name or runs/NNNNN-name/checkpoints/step_N (or best)")


def load(run: RunDir, trainer: Trainer, name: str | None = None, *, generator_only: bool = False,
         accept: Callable[[dict[str, Any]], None] = lambda meta: None) -> tuple[Path, dict[str, Any]]:
    """Verify a checkpoint (``resolve(name)``), let ``accept`` refuse it by
    its meta (with a RunError), and load it into ``trainer``; its path and meta. A
    damaged one is a RunError that points at the newest earlier one that verifies and
    loads; nothing is ever deleted."""
    chosen = resolve(run, name)

    def load_into(path: Path) -> None:
        trainer.load(path, generator_only=generator_only)

    try:
        meta = read_meta(verify_checkpoint(chosen))
        accept(meta)
        load_into(chosen)
    except CheckpointError as error:
        raise RunError(_damaged(run, error, chosen, load_into)) from None
    return chosen, meta


def _damaged(run: RunDir, error: CheckpointError, damaged: Path, load: Callable[[Path], None]) -> str:
    checkpoints = run.list_checkpoints()
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


def looks_like_checkpoint(path: Path) -> bool:
    """A folder with a meta.json or a manifest, or named ``step_N`` in a run's checkpoints."""
    if not path.is_dir():
        return False
    named = STEP.match(path.name) is not None and path.parent.name == "checkpoints"
    return named or (path / META).is_file() or (path / MANIFEST).is_file()


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
