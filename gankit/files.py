"""Atomic writes: a reader (or an interrupted run) never sees a half-written file.

Whatever is being written lives under a hidden ``.<name>.<random>.partial`` name until it
is complete; a process killed mid-write leaves only such names behind, which
``remove_leftovers`` clears. Files and folders follow the user's umask, as ``open`` and
``mkdir`` would (``tempfile`` alone makes them private).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["write_bytes", "write_text", "write_json", "atomic_directory", "remove_directory"]

PARTIAL = ".partial"
_LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o666 & ~_umask())
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _temporary_directory(beside: Path) -> Path:
    temporary = Path(tempfile.mkdtemp(prefix=f".{beside.name}.", suffix=PARTIAL, dir=beside.parent))
    temporary.chmod(0o777 & ~_umask())
    return temporary


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it becomes ``path`` only if the block
    completes. A previous ``path`` is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_directory(path)
    try:
        yield temporary
        if path.exists():
            remove_directory(path)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def follow_umask(folder: Path) -> None:
    """Give everything under ``folder`` the modes ``open`` and ``mkdir`` would have: some
    writers (safetensors, for one) make their files private."""
    mask = _umask()
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def remove_directory(path: Path) -> None:
    """Delete a folder so that it disappears at once: it is first renamed to a leftover
    name, so a kill mid-deletion never leaves a half-deleted folder under its own name."""
    doomed = path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL}"
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete what interrupted atomic writes left anywhere under ``folder``; returns it."""
    found = [path for path in folder.rglob(f"*{PARTIAL}") if _LEFTOVER.match(path.name)] if folder.is_dir() else []
    for path in sorted(found, key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found

