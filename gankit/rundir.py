"""A run directory as one object: where each of its files lives, its number, the data
spec it was trained on and its checkpoint folders. Nothing else in gankit spells these
paths. This is the layout only: the checkpoint store (saving, verifying, loading) is
``gankit.checkpoints`` and the run's lock and disk checks ``gankit.safekeeping``.

```
runs/00003-dcgan_mnist/
  recipe.toml  metrics.jsonl  curves.png  summary.json  eval.json  progress.gif
  samples/step_00000500.png ...
  checkpoints/step_00000500/ ...  checkpoints/best/
```
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gankit.backend import CheckpointError
from gankit.data import DataSpec
from gankit.errors import GankitError
from gankit.values import tomllib

__all__ = ["RunDir", "RunError", "read_meta"]

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
        """Where exporters put sample images, named so that they sort by step
        (``step_00000500.png``); the report shows the newest PNG."""
        return self.path / "samples"

    def sample_images(self) -> list[Path]:
        """The PNG images in ``samples``, in name order: by step when named as above."""
        return sorted(self.samples.glob("*.png"))

    def animations(self) -> list[Path]:
        """The GIFs exporters wrote in the run's folder, by name; the report shows the first."""
        return sorted(self.path.glob("*.gif"))

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

    def read_recipe(self) -> dict[str, Any]:
        """recipe.toml as a table: the fully resolved recipe the run was trained with."""
        if problem := self.not_a_run():
            raise RunError(problem)
        try:
            with open(self.recipe, "rb") as handle:
                return tomllib.load(handle)
        except OSError as error:
            raise RunError(f"cannot read {self.recipe} ({error.strerror or error})") from None
        except (tomllib.TOMLDecodeError, RecursionError, ValueError) as error:
            raise RunError(f"{self.recipe}: damaged, not valid TOML ({error}); restore it from a copy") from None

    def spec(self) -> DataSpec:
        """The data's shape, recorded in recipe.toml, so networks can be rebuilt without the data."""
        table = self.read_recipe().get("gankit", {}).get("data_spec")
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

    def read_summary(self) -> dict[str, Any] | None:
        """What summary.json records (written when a run ends), or None if it is missing or unreadable."""
        try:
            summary = json.loads(self.summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return summary if isinstance(summary, dict) else None



def read_meta(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint / META).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(checkpoint / META, error) from None


