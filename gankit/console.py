"""Everything the user sees. The only module that touches rich, which it imports only when
something is shown, so that ``gankit --help`` does not pay for it."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from gankit import API_VERSION, __version__
from gankit.events import CheckpointSaved, EvalLogged, Event, RunFinished, RunStarted, StepLogged
from gankit.registry import KINDS, Registry

if TYPE_CHECKING:
    from rich.console import Console


def _console(name: str) -> "Console":
    """The module's ``out`` or ``err`` console, made on first use (tests may replace them).
    Off a terminal (a pipe, a log file) nothing is wrapped or cropped at 80 columns, so that
    paths and commands stay whole to be copied; tables still fit 80 columns."""
    found = globals().get(name)
    if found is None:
        from rich.console import Console

        found = globals()[name] = Console(stderr=name == "err", highlight=False)
        found.soft_wrap = not found.is_terminal
    return found


def __getattr__(name: str):
    if name in ("out", "err"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def escape(text: str) -> str:
    """``text`` with rich's markup characters escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def silence_output() -> None:
    """Show nothing on standard output from now on (errors and warnings still show)."""
    from rich.console import Console

    globals()["out"] = Console(file=open(os.devnull, "w"), highlight=False)


def error(message: str) -> None:
    _console("err").print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def warn(message: str) -> None:
    _console("err").print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    _console("out").print(escape(message))


def show_toml(text: str) -> None:
    from rich.syntax import Syntax

    _console("out").print(Syntax(text, "toml", background_color="default"))


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def _losses(values: dict[str, float]) -> str:
    return f"{_d_and_g(values)}  {_d_outputs(values)}"


def _d_and_g(values: dict[str, float]) -> str:
    get = lambda key: values.get(key, float("nan"))  # noqa: E731
    return f"D {get('d_loss'):.3f}  G {get('g_loss'):.3f}"


def _d_outputs(values: dict[str, float]) -> str:
    get = lambda key: values.get(key, float("nan"))  # noqa: E731
    return f"D(x) {get('d_real'):.2f}  D(G(z)) {get('d_fake'):.2f}"


LINE_PIECES = ("title", "bar", "steps", "epoch", "losses", "d_outputs", "scores", "speed", "elapsed", "eta")
"""A run's live line, in the order shown."""
DROPPED_FIRST = ("bar", "d_outputs", "epoch", "speed", "elapsed", "scores")
"""What a narrow terminal loses first; the step count, the losses and the ETA stay (the title is shortened last)."""
BAR_WIDTH, BAR_MIN = 24, 10


def fitted_line(task, width: int):
    """A run's progress (a rich Task of ``_run_bars``) as one line of at most ``width``
    cells: what matters most is kept, and the bar shrinks before it goes."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    fields = task.fields
    texts = {
        "title": Text(task.description, style="bold"),
        "steps": Text(f"{int(task.completed)}/{int(task.total or 0)}"),
        "epoch": Text(f"epoch {fields.get('epoch', 0)}"),
        "losses": Text(fields.get("losses", "")),
        "d_outputs": Text(fields.get("d_outputs", "")),
        "scores": Text(fields.get("scores", "")),
        "speed": Text(fields.get("speed", "")),
        "elapsed": Text(f"elapsed {_clock(task.elapsed or 0)}"),
        "eta": Text(f"eta {fields.get('eta', '-')}"),
    }
    shown = [name for name in LINE_PIECES if name == "bar" or texts[name].plain]
    length = lambda names: sum(BAR_MIN if n == "bar" else texts[n].cell_len for n in names) + 2 * (len(names) - 1)  # noqa: E731
    for name in DROPPED_FIRST:
        if length(shown) <= width:
            break
        if name in shown:
            shown.remove(name)
    if length(shown) > width:
        texts["title"].truncate(max(width - length(shown) + texts["title"].cell_len, 1), overflow="ellipsis")
    line = Table.grid(padding=(0, 2))
    for name in shown:
        line.add_column(no_wrap=True, width=min(BAR_WIDTH, BAR_MIN + width - length(shown)) if name == "bar" else None)
    line.add_row(*(ProgressBar(task.total, task.completed, width=None) if name == "bar" else texts[name]
                   for name in shown))
    return line


def _run_bars():
    from rich.progress import Progress, ProgressColumn

    screen = _console("out")

    class FittedLine(ProgressColumn):
        def render(self, task):
            return fitted_line(task, screen.width)

    return Progress(FittedLine(), console=screen, transient=False, get_time=lambda: time.monotonic())


class RunProgress:
    """One run's progress: epoch, step, losses, D(x), D(G(z)), images/s, elapsed and ETA.

    On a terminal, a live bar. Anywhere else (nohup, CI, a cluster's log file) plain lines:
    one at the first logged step, then at most one every ``interval`` seconds, and one at
    the end, besides checkpoints and scores. The ETA, of the whole run, comes from the
    steps done since the run (or resume) started, so it shows from the first logged step
    even when each step takes minutes; a run with a time budget (``train.max_seconds``)
    shows the sooner of that and the end of its budget.
    """

    def __init__(self, title: str, *, interval: float = 30.0, shared=None):
        """``shared``: the live display of a whole batch (``BatchProgress``), where this run gets a bar."""
        self.title, self.interval = title, interval
        self.plain = not _console("out").is_terminal
        self.owned = shared is None
        self.progress = None if self.plain else (shared or _run_bars())
        self.task = None
        self.started = self.start_step = self.total = 0
        self.budget: float | None = None
        self.start_spent = self.spent = 0.0
        self.last_line = float("-inf")
        self.last_step = None

    def __enter__(self):
        if self.progress is not None and self.owned:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None and self.owned:
            self.progress.stop()

    def _print(self, text: str) -> None:
        (self.progress.console if self.progress is not None else _console("out")).print(text, soft_wrap=self.plain)

    def _eta(self, step: int) -> str:
        elapsed = time.monotonic() - self.started
        done = step - self.start_step
        if done <= 0 or elapsed <= 0:
            return "-"
        left = (self.total - step) * elapsed / done
        spent = self.spent - self.start_spent
        if self.budget is not None and spent > 0:  # the budget's seconds, at the pace they have been spent
            left = min(left, max(self.budget - self.spent, 0.0) * elapsed / spent)
        return _clock(left)

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.started, self.start_step, self.total = time.monotonic(), event.start_step, event.total_steps
            self.budget, self.start_spent = event.max_seconds, event.seconds_spent
            self.spent = event.seconds_spent
            params = ", ".join(f"{k} {v:,}" for k, v in event.parameters.items())
            self._print(f"[dim]{escape(str(event.run_dir))}: {params} parameters, "
                        f"{event.steps_per_epoch} steps/epoch of {event.batch_size}[/]")
            if self.progress is not None:
                self.task = self.progress.add_task(self.title, total=event.total_steps, completed=event.start_step,
                                                   epoch=event.start_step // max(event.steps_per_epoch, 1),
                                                   losses="", d_outputs="", scores="", speed="", eta="-")
        elif isinstance(event, StepLogged):
            speed = f"{event.values.get('images_per_sec', 0):,.0f} img/s"
            if event.seconds_spent is not None:
                self.spent = event.seconds_spent
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=event.step, epoch=event.epoch, losses=_d_and_g(event.values),
                                     d_outputs=_d_outputs(event.values), speed=speed, eta=self._eta(event.step))
            elif self.plain and (time.monotonic() - self.last_line >= self.interval or event.step == self.total):
                self._line(event.step, f"epoch {event.epoch}  {_losses(event.values)}  {speed}")
        elif isinstance(event, EvalLogged):
            scores = "  ".join(f"{k.upper()} {v:.4g}" for k, v in event.values.items() if not k.endswith("_std"))
            if self.task is not None:
                self.progress.update(self.task, scores=scores)
            self._print(f"[dim]step {event.step}: {escape(scores)}[/]")
        elif isinstance(event, CheckpointSaved):
            self._print(f"[dim]checkpoint {escape(str(event.path))}[/]")
        elif isinstance(event, RunFinished):
            if self.task is not None:
                self.progress.update(self.task, completed=event.step)
            elif self.plain and self.last_step != event.step:
                self._line(event.step, event.status)

    def _line(self, step: int, text: str) -> None:
        elapsed = _clock(time.monotonic() - self.started)
        percent = 100 * step / max(self.total, 1)
        self._print(f"{escape(self.title)}  step {step}/{self.total} ({percent:.0f}%)  {escape(text)}  "
                    f"elapsed {elapsed}  eta {self._eta(step)}")
        self.last_line, self.last_step = time.monotonic(), step


class BatchProgress:
    """Every run of a parallel batch at once: a bar per run on a terminal (added as each
    starts), elsewhere each run's plain lines, named after the run."""

    def __init__(self, titles: list[str], *, interval: float = 30.0):
        self.shared = None if not _console("out").is_terminal else _run_bars()
        self.runs = [RunProgress(title, interval=interval, shared=self.shared) for title in titles]

    def __enter__(self):
        if self.shared is not None:
            self.shared.start()
        return self

    def __exit__(self, *exc):
        if self.shared is not None:
            self.shared.stop()

    def handle(self, index: int, event: Event) -> None:
        self.runs[index].handle(event)

    def message(self, index: int, level: str, text: str) -> None:
        """A dataset's or the run's warning or note, from the worker training run ``index``."""
        (warn if level == "warn" else info)(f"{self.runs[index].title}: {text}")


@contextmanager
def work_progress(interval: float = 30.0) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(what, done, total)`` callback for long work (feature extraction): a bar
    per ``what`` on a terminal, elsewhere a plain line at the start, the end, and at most
    every ``interval`` seconds between."""
    if not _console("out").is_terminal:
        last: dict[str, float] = {}

        def line(what: str, done: int, total: int) -> None:
            if done in (0, total) or time.monotonic() - last.get(what, 0.0) >= interval:
                _console("out").print(f"{escape(what)}: {done:,}/{total:,}", soft_wrap=True)
                last[what] = time.monotonic()

        yield line
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=_console("out")) as bars:
        tasks: dict[str, int] = {}

        def bar(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(escape(what), total=total)
            bars.update(tasks[what], completed=done)

        yield bar


def plugins_table(registry: Registry, kind: str | None) -> None:
    from rich.table import Table

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
            if component.default:
                description += " [dim](a default)[/]"
            if callable(component.backends):
                description += " [dim](backends: by its parameters)[/]"
            elif component.backends is not None:
                description += f" [dim](backends: {', '.join(component.backends)})[/]"
            table.add_row(component.name, escape(component.provider), requires, description)
        _console("out").print(table)
    missing = _missing(registry, kind)
    if missing:
        # Whole lines, not a table cell: each ends in the command to copy.
        _console("out").print("[bold]to use the components with a missing module[/]")
        for component, module, command in missing:
            _console("out").print(f"  {component.kind} {escape(component.name)} needs {escape(module)}: "
                                  f"{escape(command)}", soft_wrap=True)
    problems = _plugin_problems(registry, kind)
    if problems:
        # Whole lines, not a table: each ends in the setting that silences it, made to be copied.
        _console("out").print("[bold red]broken or conflicting plugins[/]")
        for _, problem in problems:
            _console("out").print(f"  {escape(problem)}", soft_wrap=True)


def _missing(registry: Registry, kind: str | None) -> list[tuple]:
    """(component, module, the command that installs it) for each missing required module shown."""
    from gankit.registry import install_command

    return [(c, module, install_command(c.distribution, module))
            for each in ((kind,) if kind else KINDS) for c in registry.of_kind(each) for module in c.missing_requirements()]


def _plugin_problems(registry: Registry, kind: str | None) -> list[tuple[str, str]]:
    """(name, one-line problem) of each broken plugin and each conflict shown for ``kind``."""
    rows = [(b.name, b.problem()) for b in registry.broken]
    return rows + [(c.what, c.problem()) for c in _conflicts(registry, kind)]


def _conflicts(registry: Registry, kind: str | None) -> list:
    """The conflicts to show; with ``kind``, those over components of other kinds are left
    out (a broken plugin's kinds are unknown, so every broken one is shown)."""
    return [c for c in registry.conflicts.values() if kind is None or c.kind in (None, kind)]


def plugins_json(registry: Registry, kind: str | None) -> None:
    from gankit.registry import install_command

    rows = [
        {
            "kind": c.kind,
            "name": c.name,
            "provider": c.provider,
            "description": c.description,
            "requires": {r: r not in c.missing_requirements() for r in c.requires},
            "install": {r: install_command(c.distribution, r) for r in c.missing_requirements()},
            "default": c.default,
            "backends": ("by its parameters" if callable(c.backends) else list(c.backends) if c.backends is not None
                         else None),
        }
        for k in ((kind,) if kind else KINDS)
        for c in registry.of_kind(k)
    ]
    broken = [{"name": b.name, "provider": b.provider, "error": b.error, "problem": b.problem()} for b in registry.broken]
    conflicts = [
        {"what": c.what, "kind": c.kind, "plugins": [{"name": n, "provider": p} for n, p in c.claimants], "problem": c.problem()}
        for c in _conflicts(registry, kind)
    ]
    document = {"api_version": API_VERSION, "gankit_version": __version__,
                "plugins": rows, "broken": broken, "conflicts": conflicts}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def eval_table(record: dict) -> None:
    """The scores of one evaluation (``gankit.sampling.evaluate_run``) and how they were computed."""
    from rich.table import Table

    extractor, real, scores = record["extractor"], record.get("real"), record["scores"]
    floor = record.get("floor") or {}
    table = Table(title=f"scores with {escape(extractor['name'])} features", title_justify="left", title_style="bold")
    for column in ("metric", "score", "std", "real vs real"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, value in scores.items():
        if not key.endswith("_std"):
            std = scores.get(f"{key}_std")
            shown = (lambda v: f"{v:.1%}") if key == "class_accuracy" else (lambda v: f"{v:.4g}")  # noqa: E731
            table.add_row("class accuracy" if key == "class_accuracy" else escape(key.upper()), shown(value),
                          f"{std:.2g}" if std is not None else "", shown(floor[key]) if key in floor else "-")
    _console("out").print(table)
    checkpoint, generated = record["checkpoint"], record["generated"]
    lines = [f"checkpoint  {checkpoint['path']} (step {checkpoint['step']})",
             f"generated   {generated['count']:,} images, seed {generated['seed']}"]
    if accuracy := record.get("class_accuracy"):
        lines.append("per class   " + ", ".join(f"{name} {share:.0%}" for name, share in accuracy["per_class"].items()))
    if real:
        lines.append(f"real        {real['count']:,} of {real['images_in_split']:,} {real['split']} images ({real['source']})"
                     + (f", from {real['reference']['path']}" if real.get("reference") else ""))
    if record.get("floor_how"):
        lines.append(f"floor       {record['floor_how']}")
    lines.append(f"extractor   {extractor['name']}, weights sha256 {extractor.get('weights_sha256', '-')}, "
                 f"resize: {extractor.get('resize', 'not stated')}")
    _console("out").print("\n".join(f"[dim]{escape(line)}[/]" for line in lines))


def _duration(seconds: float) -> str:
    return _clock(seconds) if seconds >= 60 else f"{seconds:.0f}s"


def batch_table(outcomes, console: Console | None = None) -> None:
    """The end of a batch: one row per run (``gankit.batch.Outcome``), made to fit 80
    columns: a sweep's values get columns of their own, so its rows tell apart even when
    the long run names are cut short; a backend shared by all runs goes in the title."""
    from rich import box
    from rich.table import Table

    colours = {"completed": "green", "interrupted": "yellow", "skipped": "dim"}
    swept = list(dict.fromkeys(key for o in outcomes for key in o.sweep))
    backends = {o.backend for o in outcomes if o.backend}
    folders = {o.run_dir.parent for o in outcomes if o.run_dir is not None}
    title = "runs" + (f" in {folders.pop()}" if len(folders) == 1 else "") + \
        (f" ({backends.pop()})" if len(backends) == 1 else "")
    table = Table(title=escape(title), title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    # Names have no spaces: a wrappable column cuts them with an ellipsis, and is the one cut first.
    table.add_column("run", overflow="ellipsis")
    for key in swept:
        table.add_column(escape(key.rsplit(".", 1)[-1]), overflow="ellipsis")
    if len(backends) > 1:
        table.add_column("backend", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("steps", "time", "D loss", "G loss"):
        table.add_column(column, justify="right", no_wrap=True)
    for o in outcomes:
        loss = lambda key, final=o.final: f"{final[key]:.3f}" if key in final else "-"  # noqa: E731
        row = [escape(o.run_dir.name if o.run_dir else o.label)]
        row += [escape(str(o.sweep.get(key, "-"))) for key in swept]
        row += [o.backend or "-"] if len(backends) > 1 else []
        row += [f"[{colours.get(o.status, 'red')}]{o.status}[/]", str(o.steps) if o.steps else "-",
                _duration(o.seconds) if o.seconds else "-", loss("d_loss"), loss("g_loss")]
        table.add_row(*row)
    (console or _console("out")).print(table)


def _settings(settings: dict) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value:.3g}" if isinstance(value, float) else
                     f"{key.rsplit('.', 1)[-1]}={value}" for key, value in settings.items())


def comparison_table(comparison, title: str = "configurations", console: Console | None = None) -> None:
    """A ``gankit.compare.Comparison``: each configuration's score over its seeds (mean ±
    sd, 95 % interval), best first, and whether each is significantly worse than the best."""
    from rich import box
    from rich.table import Table

    from gankit.compare import TEST

    better = "higher" if comparison.higher_is_better else "lower"
    table = Table(title=escape(f"{title}: {comparison.metric} at the {comparison.at} evaluation ({better} is better)"),
                  title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption=escape(f"vs best: {TEST}"), caption_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("configuration", overflow="fold", min_width=24)
    table.add_column("seeds", justify="right", no_wrap=True)
    table.add_column("mean ± sd", justify="right", no_wrap=True)
    table.add_column("95% interval", justify="right", no_wrap=True)
    table.add_column("vs best", no_wrap=True)
    for c in comparison.ranked:
        spread = f" ± {c.sd:.3g}" if c.sd is not None else ""
        interval = f"{c.interval[0]:.3g} – {c.interval[1]:.3g}" if c.interval else "-"
        if c.rank == 1:
            verdict = "[green]best[/]"
        elif c.p_value is None:
            verdict = "[dim]untested (one seed)[/]"
        else:
            verdict = (f"[red]worse, p={c.p_value:.2g}[/]" if c.significant
                       else f"[yellow]not distinguishable, p={c.p_value:.2g}[/]")
        name = escape(c.label) + (f" [dim]({escape(_settings(c.settings))})[/]" if c.settings else "")
        table.add_row(str(c.rank), name, str(len(c.values)), f"{c.mean:.4g}{spread}", interval, verdict)
    (console or _console("out")).print(table)
    for run in comparison.unscored:
        (console or _console("out")).print(f"[dim]not scored: {escape(str(run.run_dir))}: {escape(run.why)}[/]")


def search_summary(search, study, recorded: dict, console: Console | None = None, top: int = 10) -> None:
    """The end of a search: its best trials, and the confirmation over seeds."""
    from rich import box
    from rich.table import Table

    shown = console or _console("out")
    trials = study.get_trials(deepcopy=False)
    done = search.best(study)
    counts = ", ".join(f"{count} {state}" for state, count in recorded.get("trials", {}).items())
    table = Table(title=escape(f"search {search.root.name}: {counts}; best {top} by {search.metric}"),
                  title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column(escape(search.metric), justify="right", no_wrap=True)
    for parameter in search.config.parameters:
        table.add_column(escape(parameter.key.rsplit(".", 1)[-1]), overflow="ellipsis")
    for trial in done[:top]:
        values = [trial.params.get(p.key, "-") for p in search.config.parameters]
        table.add_row(str(trial.number), f"{trial.value:.4g}",
                      *(f"{v:.3g}" if isinstance(v, float) else escape(str(v)) for v in values))
    shown.print(table)
    if not done:
        shown.print(f"[red]no trial completed[/] ({len(trials)} ended otherwise; see {escape(str(search.root))}/trials)")
    confirmed = recorded.get("confirmed")
    if confirmed and "error" not in confirmed:
        from gankit.compare import compare

        comparison_table(compare([search.root / "confirm"]), title="confirmed over seeds", console=console)
    elif confirmed:
        shown.print(f"[yellow]confirmation: {escape(confirmed['error'])}[/]")
