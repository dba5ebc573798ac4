"""``curves.png``: a run's losses, discriminator outputs and evaluation scores against
steps, redrawn from metrics.jsonl at every checkpoint and at the end of the run.

Drawn on a bare matplotlib ``Figure`` (the Agg renderer, no pyplot), so nothing global
changes in the process; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from gankit.events import CheckpointSaved, Event, RunFinished
from gankit.files import write_bytes
from gankit.rundir import RunDir

Series = dict[str, dict[int, float]]
"""metric name -> {step: value}."""

NOT_PLOTTED = {"step", "epoch", "images_per_sec"}
D_OUTPUTS = ("d_real", "d_fake")
RATES = ("lr_g", "lr_d")
LABELS = {"d_loss": "D", "g_loss": "G", "d_real": "D(x)", "d_fake": "D(G(z))", "lr_g": "G", "lr_d": "D"}
PANEL_TITLES = {"augment_p": "augmentation probability p", "d_real_sign": "r_t = E[sign(D(x) - boundary)] (ADA)"}


def read_metrics(path: Path) -> Series:
    """Every value in a metrics.jsonl by name and step. A step logged twice (a run resumed
    from a checkpoint before its last logged step) keeps its later value."""
    series: Series = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return series
    for line in lines:
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a killed process
        for key, value in record.items():
            if key not in NOT_PLOTTED and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, {})[step] = float(value)
    return series


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


def describe_recipe(recipe: dict[str, Any], sweep: dict[str, Any] | None = None) -> str:
    """One line of a resolved recipe's key settings (and swept values) for titles."""
    train, use = recipe.get("train", {}), {s: recipe.get(s, {}).get("use", "?") for s in ("dataset", "architecture", "backend")}
    parts = [f"{use['architecture']} on {use['dataset']}, {use['backend']}",
             f"batch {train.get('batch_size', '?')}, {train.get('loss', '?')} loss, lr_g {_number(train.get('lr_g'))}, "
             f"lr_d {_number(train.get('lr_d'))}, seed {recipe.get('seed', '?')}"]
    augment = train.get("augment")
    if isinstance(augment, dict):
        parts[-1] += f", {augment.get('policy', '?')} augmentation"
    if sweep:
        parts.append("sweep " + ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in sweep.items()))
    return "; ".join(parts)


def _panels(series: Series) -> list[tuple[str, dict[str, str]]]:
    """(panel title, {metric: legend label}) for each panel, in order."""
    losses = {key: LABELS.get(key, key) for key in series if key.endswith("_loss")}
    outputs = {key: LABELS[key] for key in D_OUTPUTS if key in series}
    rates = {key: LABELS[key] for key in RATES if key in series}
    panels = [(title, keys) for title, keys in (("losses", losses), ("discriminator outputs", outputs),
                                                ("learning rates", rates)) if keys]
    for key in series:
        if key not in losses and key not in outputs and key not in rates and not key.endswith("_std"):
            panels.append((PANEL_TITLES.get(key, key), {key: key}))
    return panels


def draw_curves(series: Series, title: str) -> bytes:
    """A PNG of the series, one panel per kind of value, two panels a row."""
    from matplotlib.figure import Figure

    panels = _panels(series)
    columns = 2 if len(panels) > 1 else 1
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(figsize=(10, 1.2 + 2.8 * rows), dpi=80, layout="constrained")
    figure.suptitle(title, fontsize=10)
    if not panels:
        figure.text(0.5, 0.5, "no steps logged yet", ha="center", va="center", color="grey")
    for index, (panel_title, keys) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        for key, label in keys.items():
            steps = sorted(series[key])
            values = [series[key][step] for step in steps]
            axes.plot(steps, values, label=label, marker="o" if len(steps) <= 30 else None, markersize=3)
            if f"{key}_std" in series:
                std = [series[f"{key}_std"].get(step, 0.0) for step in steps]
                axes.fill_between(steps, [v - s for v, s in zip(values, std)], [v + s for v, s in zip(values, std)],
                                  alpha=0.2)
        axes.set_title(panel_title, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        if len(keys) > 1:
            axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_curves(run_dir: RunDir, title: str) -> None:
    write_bytes(run_dir.curves, draw_curves(read_metrics(run_dir.metrics), title))


def run_title(run_dir: RunDir) -> str:
    """The run's directory name over its key settings, from its resolved recipe.toml."""
    from gankit.recipe import RecipeError, read_toml

    try:
        recipe = read_toml(run_dir.recipe)
    except RecipeError:
        return run_dir.name
    return f"{run_dir.name}\n{describe_recipe(recipe, recipe.get('gankit', {}).get('sweep'))}"


class CurvesWriter:
    """Redraws ``curves.png`` at each checkpoint and at the end of the run."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir
        self.title = run_title(run_dir)
        self.drawn_at: int | None = None

    def handle(self, event: Event) -> None:
        checkpoint = isinstance(event, CheckpointSaved) and event.path != self.run_dir.best
        # The last checkpoint comes just before the end: drawing once is enough.
        if checkpoint or (isinstance(event, RunFinished) and event.step != self.drawn_at):
            write_curves(self.run_dir, self.title)
            self.drawn_at = event.step
