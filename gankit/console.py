"""Everything the user sees. The only module that touches rich."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.syntax import Syntax
from rich.table import Table

from gankit.events import CheckpointSaved, Event, RunFinished, RunStarted, StepLogged
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
                                               losses="", speed="")
        elif isinstance(event, StepLogged) and self.task is not None:
            v = event.values
            losses = (f"D {v.get('d_loss', float('nan')):.3f}  G {v.get('g_loss', float('nan')):.3f}  "
                      f"D(x) {v.get('d_real', float('nan')):.2f}  D(G(z)) {v.get('d_fake', float('nan')):.2f}")
            self.progress.update(self.task, completed=event.step, epoch=event.epoch, losses=losses,
                                 speed=f"{v.get('images_per_sec', 0):,.0f} img/s")
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
