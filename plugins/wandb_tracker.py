"""Each run as a Weights & Biases run: offline files in the run directory (``wandb sync`` them
later) unless an API key is configured.

Config: the resolved recipe's keys, the run directory and gankit's version; history: every
logged value (``train/d_loss``, ...), evaluation score (``eval/fid``) and fixed-noise grid
(``samples``) at its step; files: ``curves.png`` and ``progress.gif``. A sweep's or a
search's runs share a group named after their runs folder. Delivery, timeouts and resume:
``gankit_plugins.tracking``.
"""

from __future__ import annotations

import netrc
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal, Optional
from urllib.parse import urlsplit

from pydantic import Field

from gankit import __version__, hookimpl
from gankit.rundir import RunDir

from gankit_plugins.tracking import Row, TrackerExporter, TrackerParams, in_a_batch


class WandbParams(TrackerParams):
    project: str = Field("gankit", min_length=1, max_length=128, description="the W&B project")
    entity: Optional[str] = Field(None, min_length=1, description="the W&B user or team (default: yours)")
    group: Optional[str] = Field(None, min_length=1, max_length=128,
                                 description="default: a sweep's or search's runs folder; none for a single run")
    tags: tuple[str, ...] = Field((), description="labels for the run")
    mode: Literal["auto", "online", "offline"] = Field(
        "auto", description="auto: WANDB_MODE if set, else online with an API key and offline without")


def api_key_configured() -> bool:
    """WANDB_API_KEY, or the ~/.netrc entry ``wandb login`` writes, for W&B's host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wait_for_a_free_second(folder: Path, run_id: str) -> None:
    """W&B names a session's folder after the second it starts in: a resume within the
    second of the last session would write into that session's folder."""
    if list(folder.glob(f"*run-{time.strftime('%Y%m%d_%H%M%S')}-{run_id}")):
        time.sleep(1.01 - time.time() % 1)


class WandbTracker:
    def __init__(self, params: WandbParams, run_dir: RunDir):
        self.params, self.run_dir = params, run_dir
        self.run = None

    def start(self, run_id: str | None, settings: dict[str, Any]) -> str:
        import wandb

        params, folder = self.params, Path(self.run_dir).resolve()
        mode = params.mode if params.mode != "auto" else os.environ.get("WANDB_MODE") or (
            "online" if api_key_configured() else "offline")
        group = params.group or (str(folder.parent)[-128:] if in_a_batch(self.run_dir) else None)
        config = {**settings, "gankit.run_dir": str(folder), "gankit.version": __version__}
        if run_id is not None:
            wait_for_a_free_second(folder / "wandb", run_id)
        self.run = wandb.init(
            project=params.project, entity=params.entity, group=group, tags=list(params.tags), name=self.run_dir.name,
            id=run_id, resume="allow", dir=str(folder), mode=mode, config=config, allow_val_change=True,
            reinit="create_new", settings=wandb.Settings(
                silent=True, console="off", disable_git=True, save_code=False, x_disable_stats=True,
                x_save_requirements=False, init_timeout=params.timeout))
        return self.run.id

    def log(self, rows: list[Row]) -> None:
        import wandb

        for row in rows:
            image = {} if row.image is None else {"samples": wandb.Image(row.image)}
            self.run.log({**row.values, **image}, step=row.step)

    def upload(self, files: list[Path]) -> None:
        for path in files:  # a copy: the run directory's own is redrawn at every checkpoint
            copy = Path(self.run.dir) / path.name
            shutil.copyfile(path, copy)
            self.run.save(str(copy), base_path=self.run.dir, policy="end")

    def finish(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=1 if status == "diverged" else 0)


def wandb_exporter(params: WandbParams, run_dir: RunDir) -> TrackerExporter:
    return TrackerExporter("wandb", params, run_dir, WandbTracker(params, RunDir(run_dir)))


@hookimpl
def register_exporters(register):
    register("wandb", wandb_exporter, params=WandbParams, requires=("wandb",),
             description="a Weights & Biases run (offline without an API key): recipe, losses, scores, grids")
