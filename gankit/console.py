"""Everything the user sees. The only module that touches rich."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.syntax import Syntax
from rich.table import Table

from gankit.events import CheckpointSaved, EvalLogged, Event, RunFinished, RunStarted, StepLogged
from gankit.registry import KINDS, Registry

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    out.print(escape(message))


def show_toml(text: str) -> None:
    out.print(Syntax(text, "toml", background_color="default"))


class RunProgress:
    """A live progress bar for one run: epoch, step, losses, D(x), D(G(z)), images/s, ETA."""

    def __init__(self, title: str):
        self.title = title
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("{task.fields[losses]}"),
            TextColumn("{task.fields[scores]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=out,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            params = ", ".join(f"{k} {v:,}" for k, v in event.parameters.items())
            self.progress.console.print(f"[dim]{escape(str(event.run_dir))}: {params} parameters, "
                                        f"{event.steps_per_epoch} steps/epoch of {event.batch_size}[/]")
            self.task = self.progress.add_task(self.title, total=event.total_steps, completed=event.start_step,
                                               epoch=event.start_step // max(event.steps_per_epoch, 1),
                                               losses="", scores="", speed="")
        elif isinstance(event, StepLogged) and self.task is not None:
            v = event.values
            losses = (f"D {v.get('d_loss', float('nan')):.3f}  G {v.get('g_loss', float('nan')):.3f}  "
                      f"D(x) {v.get('d_real', float('nan')):.2f}  D(G(z)) {v.get('d_fake', float('nan')):.2f}")
            self.progress.update(self.task, completed=event.step, epoch=event.epoch, losses=losses,
                                 speed=f"{v.get('images_per_sec', 0):,.0f} img/s")
        elif isinstance(event, EvalLogged) and self.task is not None:
            scores = "  ".join(f"{k.upper()} {v:.4g}" for k, v in event.values.items() if not k.endswith("_std"))
            self.progress.update(self.task, scores=scores)
            self.progress.console.print(f"[dim]step {event.step}: {escape(scores)}[/]")
        elif isinstance(event, CheckpointSaved):
            self.progress.console.print(f"[dim]checkpoint {escape(str(event.path))}[/]")
        elif isinstance(event, RunFinished) and self.task is not None:
            self.progress.update(self.task, completed=event.step)


def plugins_table(registry: Registry, kind: str | None) -> None:
    for each in (kind,) if kind else KINDS:
        table = Table(title=f"{each}s", title_justify="left", title_style="bold")
        for column in ("name", "provider", "requires", "description"):
            table.add_column(column)
        for component in registry.of_kind(each):
            missing = set(component.missing_requirements())
            requires = " ".join(
                f"[red]{r} (missing)[/]" if r in missing else f"[green]{r}[/]" for r in component.requires
            ) or "-"
            description = escape(component.description)
            if component.backends is not None:
                description += f" [dim](backends: {', '.join(component.backends)})[/]"
            table.add_row(component.name, escape(component.provider), requires, description)
        out.print(table)
    if registry.broken and not kind:
        table = Table(title="broken plugins", title_justify="left", title_style="bold red")
        for column in ("name", "provider", "error"):
            table.add_column(column)
        for plugin in registry.broken:
            table.add_row(plugin.name, escape(plugin.provider), escape(plugin.error))
        out.print(table)


def plugins_json(registry: Registry, kind: str | None) -> None:
    rows = [
        {
            "kind": c.kind,
            "name": c.name,
            "provider": c.provider,
            "description": c.description,
            "requires": {r: r not in c.missing_requirements() for r in c.requires},
            "backends": list(c.backends) if c.backends is not None else None,
        }
        for k in ((kind,) if kind else KINDS)
        for c in registry.of_kind(k)
    ]
    broken = [{"name": b.name, "provider": b.provider, "error": b.error} for b in registry.broken]
    sys.stdout.write(json.dumps({"plugins": rows, "broken": broken}, indent=2) + "\n")


def eval_table(record: dict) -> None:
    """The scores of one evaluation (``gankit.evaluation.evaluate_run``) and how they were computed."""
    extractor, real, scores = record["extractor"], record.get("real"), record["scores"]
    table = Table(title=f"scores with {escape(extractor['name'])} features", title_justify="left", title_style="bold")
    for column in ("metric", "score", "std"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, value in scores.items():
        if not key.endswith("_std"):
            std = scores.get(f"{key}_std")
            table.add_row(escape(key.upper()), f"{value:.4g}", f"{std:.2g}" if std is not None else "")
    out.print(table)
    checkpoint, generated = record["checkpoint"], record["generated"]
    lines = [f"checkpoint  {checkpoint['path']} (step {checkpoint['step']})",
             f"generated   {generated['count']:,} images, seed {generated['seed']}"]
    if real:
        lines.append(f"real        {real['count']:,} of {real['images_in_split']:,} {real['split']} images ({real['source']})")
    lines.append(f"extractor   {extractor['name']}, weights sha256 {extractor.get('weights_sha256', '-')}")
    out.print("\n".join(f"[dim]{escape(line)}[/]" for line in lines))


def batch_table(outcomes) -> None:
    """The end of a batch: one row per run (``gankit.batch.Outcome``)."""
    colours = {"completed": "green", "interrupted": "yellow", "skipped": "dim"}
    table = Table(title="runs", title_justify="left", title_style="bold")
    for column in ("recipe", "backend", "status", "steps", "time", "D loss", "G loss", "run directory"):
        table.add_column(column, justify="right" if column in ("steps", "time", "D loss", "G loss") else "left")
    for o in outcomes:
        colour = colours.get(o.status, "red")
        loss = lambda key: f"{o.final[key]:.3f}" if key in o.final else "-"  # noqa: E731
        table.add_row(escape(o.label), o.backend or "-", f"[{colour}]{o.status}[/]", str(o.steps) if o.steps else "-",
                      f"{o.seconds:.0f}s" if o.seconds else "-", loss("d_loss"), loss("g_loss"),
                      escape(str(o.run_dir)) if o.run_dir else escape(o.message))
    out.print(table)
