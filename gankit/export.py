"""``gankit export``: a run's generator as one standalone model that takes noise (and, for
a conditional run, class labels) and returns images, with ``export.json`` beside it.

The conversion is the backend's (the optional ``Trainer.export_formats`` and
``export_generator``, docs/plugins.md); here the export is checked, placed and described.
Every format shares one signature: ``noise`` float32 (N, latent size) and, conditional,
``labels`` int64 (N,) in; ``images`` float32 (N, H, W, C) in [-1, 1] out.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gankit import __version__
from gankit.files import atomic_directory, write_json
from gankit.registry import install_hint
from gankit.rundir import RunDir, read_meta
from gankit.runner import RunError, build_architecture, load_generator

WEB = "web"
"""The format gankit builds itself: a web page around the backend's ONNX export."""
DESCRIPTION = "export.json"
TO_UINT8 = "round((images + 1) * 127.5), clipped to 0..255: the uint8 pixels gankit sample writes"


def default_folder(run_dir: Path, format: str) -> Path:
    """Where an export goes without ``-o``: ``RUN/export/FORMAT``."""
    return Path(run_dir) / "export" / format


def offered_formats(trainer) -> dict[str, tuple[str, ...]]:
    """The formats a trainer exports, each with the modules it needs; ``web`` wherever ONNX is."""
    offered = dict(trainer.export_formats()) if callable(getattr(trainer, "export_formats", None)) else {}
    if "onnx" in offered:
        offered[WEB] = offered["onnx"]
    return offered


def module_installed(module: str) -> bool:
    """Found without importing it (an exporter's modules are heavy)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_folder(folder: Path) -> None:
    """An export replaces an earlier export (a folder with export.json) or fills an empty or
    new folder; anything else at ``folder`` is refused rather than deleted."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise RunError(f"-o {folder}: a file is in the way; choose another folder")
    if any(folder.iterdir()) and not (folder / DESCRIPTION).is_file():
        raise RunError(f"-o {folder}: that folder holds other files (no {DESCRIPTION} of an earlier export); "
                       "choose a new or empty folder")


def export_run(registry, run_dir: Path, format: str, output: Path | None = None, *, raw: bool = False,
               checkpoint: str | None = None, onnxruntime_web: Path | None = None,
               cache_dir: Path | None = None) -> dict[str, Any]:
    """Export the generator of one of the run's checkpoints (the last by default; the EMA
    generator unless ``raw``) into ``output`` (default ``RUN/export/FORMAT``), which is
    written whole or not at all. ``web`` also needs onnxruntime-web (``gankit.web_export``).
    Returns what export.json records."""
    folder = Path(output) if output is not None else default_folder(run_dir, format)
    check_folder(folder)
    recipe, trainer, chosen = load_generator(registry, run_dir, checkpoint)
    backend = recipe.backend
    offered = offered_formats(trainer)
    if format not in offered:
        offers = f"it offers {', '.join(sorted(offered))}" if offered else "it exports no generator"
        raise RunError(f"--format {format}: the {backend.name} backend of {run_dir} cannot export it; {offers}")
    missing = [module for module in offered[format] if not module_installed(module)]
    if missing:
        names = ", ".join(repr(module) for module in missing)
        raise RunError(f"--format {format} needs {names}, not installed; {install_hint(backend.component.distribution, missing)}")
    tarball = None
    if format == WEB:
        from gankit.web_export import onnxruntime_web_tarball

        tarball = onnxruntime_web_tarball(onnxruntime_web, cache_dir)
    spec = RunDir(run_dir).spec()
    architecture = build_architecture(recipe, spec)
    with atomic_directory(folder) as building:
        details = dict(trainer.export_generator("onnx" if format == WEB else format, building, raw=raw))
        description = describe(format, details.pop("file"), architecture.latent_dim, architecture.classes, spec,
                               run_dir=run_dir, checkpoint=chosen, backend=backend.name,
                               generator="raw" if raw or recipe.train.ema is None else "ema", exporter=details)
        if tarball is not None:
            from gankit.web_export import write_web_page

            description["onnxruntime_web"] = write_web_page(building, description, tarball)
        write_json(building / DESCRIPTION, description)
    return {**description, "folder": str(folder)}


def describe(format: str, file: str, latent_dim: int, classes: int, spec, *, run_dir: Path, checkpoint: Path,
             backend: str, generator: str, exporter: dict[str, Any]) -> dict[str, Any]:
    """export.json: how to call the model, what it returns, and where it came from."""
    inputs = {"noise": {"dtype": "float32", "shape": ["N", latent_dim], "distribution": "standard normal"}}
    if classes:
        inputs["labels"] = {"dtype": "int64", "shape": ["N"], "range": [0, classes - 1]}
    return {
        "format": format,
        "file": file,
        "inputs": inputs,
        "outputs": {"images": {"dtype": "float32", "shape": ["N", *spec.shape], "layout": "NHWC",
                               "range": [-1.0, 1.0], "to_uint8": TO_UINT8}},
        "latent_dim": latent_dim,
        "classes": classes,
        "class_names": list(spec.names()) if classes else [],
        "run": str(Path(run_dir).resolve()),
        "checkpoint": str(Path(checkpoint).resolve()),
        "step": read_meta(checkpoint).get("step"),
        "backend": backend,
        "generator": generator,
        "exporter": exporter,
        "gankit_version": __version__,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
