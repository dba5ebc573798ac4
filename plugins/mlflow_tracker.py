"""Each run as an MLflow run: ``mlflow ui`` beside the runs folder shows them with nothing set up.

Params: the resolved recipe's keys (``train.lr_g``, ...); metrics: every logged value
(``train/d_loss``, ...) and evaluation score (``eval/fid``) at its step; artifacts: the
fixed-noise grids (``samples/step_00000500.png``), ``curves.png`` and ``progress.gif``; tags:
the run directory and gankit's version. The tracking URI is the ``tracking_uri`` parameter,
else ``MLFLOW_TRACKING_URI``, else a SQLite store, ``mlflow.db``, in the folder that holds
the runs folder. The experiment is named after the runs folder, so a sweep's or a search's
runs are one experiment. Delivery, timeouts and resume: ``gankit_plugins.tracking``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from gankit import __version__, hookimpl
from gankit.images import png_bytes
from gankit.rundir import RunDir

from gankit_plugins.tracking import Row, TrackerExporter, TrackerParams

STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "diverged": "FAILED"}
SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")
"""What MLflow's tracking stores take (a database's scheme may name its driver: postgresql+psycopg2)."""
BATCH = 100
"""Params a log_batch request may carry (metrics: 1000)."""


class MlflowParams(TrackerParams):
    tracking_uri: Optional[str] = Field(
        None, description="where to log (http://host:5000, sqlite:///mlflow.db, databricks); "
                          "default MLFLOW_TRACKING_URI, else mlflow.db beside the runs folder")
    experiment: Optional[str] = Field(None, min_length=1, description="default: the runs folder's path")

    @field_validator("tracking_uri")
    @classmethod
    def _a_uri(cls, value: str | None) -> str | None:
        try:
            parts = urlsplit(value or "")
            port = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            parts, port = None, None
        scheme = parts.scheme.split("+")[0] if parts else ""
        if value is not None and (scheme not in SCHEMES or scheme in ("http", "https") and not parts.hostname
                                  or port == 0):
            raise ValueError(f"expected a tracking URI such as http://127.0.0.1:5000 or sqlite:///mlflow.db (got {value!r})")
        return value


class MlflowTracker:
    def __init__(self, params: MlflowParams, run_dir: RunDir):
        self.params, self.run_dir = params, run_dir
        self.client, self.run_id = None, None

    def start(self, run_id: str | None, settings: dict[str, Any]) -> str:
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        self.client = MlflowClient(self._uri())
        if run_id is None:
            tags = {"gankit.run_dir": str(Path(self.run_dir).resolve()), "gankit.version": __version__}
            run = self.client.create_run(self._experiment(), run_name=self.run_dir.name, tags=tags)
        else:
            run = self.client.get_run(run_id)
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run.info.run_id
        texts = {key: value if isinstance(value, str) else json.dumps(value) for key, value in settings.items()}
        logged = run.data.params
        params = [Param(key, text) for key, text in texts.items() if key not in logged]
        # A param cannot change; what a resume changed (train.steps) is a tag.
        tags = [RunTag(f"resumed.{key}", text) for key, text in texts.items() if key in logged and logged[key] != text]
        for start in range(0, max(len(params), len(tags)), BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + BATCH], tags=tags[start:start + BATCH])
        return self.run_id

    def log(self, rows: list[Row]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(key, value, int(row.time * 1000), row.step) for row in rows for key, value in row.values.items()]
        for start in range(0, len(metrics), 10 * BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 10 * BATCH])
        with tempfile.TemporaryDirectory() as folder:
            for row in rows:
                if row.image is not None:
                    path = Path(folder) / f"step_{row.step:08d}.png"
                    path.write_bytes(png_bytes(row.image))
                    self.client.log_artifact(self.run_id, str(path), "samples")

    def upload(self, files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, STATUS.get(status, "FINISHED"))

    def _uri(self) -> str:
        return self.params.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self._beside() / 'mlflow.db'}"

    def _beside(self) -> Path:
        """The folder that holds the runs folder."""
        return Path(self.run_dir).resolve().parent.parent

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.params.experiment or str(Path(self.run_dir).resolve().parent)
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        local = not self.params.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI")
        try:
            return self.client.create_experiment(name, artifact_location=str(self._beside() / "mlartifacts") if local else None)
        except MlflowException:  # another run of the batch made it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


def mlflow_exporter(params: MlflowParams, run_dir: RunDir) -> TrackerExporter:
    return TrackerExporter("mlflow", params, run_dir, MlflowTracker(params, RunDir(run_dir)))


@hookimpl
def register_exporters(register):
    register("mlflow", mlflow_exporter, params=MlflowParams, requires=("mlflow",),
             description="an MLflow run: recipe as params, losses and scores as metrics, grids, curves and GIF")
