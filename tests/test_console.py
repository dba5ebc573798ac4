"""What the user sees: plain progress lines off a terminal, an ETA even for slow steps,
batch tables that fit 80 columns."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from gankit import console
from gankit.batch import Outcome
from gankit.cli import main
from gankit.events import EvalLogged, RunFinished, RunStarted, StepLogged


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def screen(monkeypatch):
    """The console's output, as a terminal (``terminal=True``) or a log file would get it."""
    def make(terminal: bool, width: int = 120) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(console, "out", Console(file=buffer, width=width, force_terminal=terminal,
                                                    highlight=False))
        return buffer
    clock = Clock()
    monkeypatch.setattr(console.time, "monotonic", clock)
    make.clock = clock
    return make


def steps(run_dir: Path, clock: Clock, seconds_per_step: float, logged: list[int], total: int):
    yield RunStarted(run_dir, 0, total, 100, 64)
    for step in logged:
        clock.now += seconds_per_step * 2
        yield StepLogged(step, 0, {"d_loss": 0.7, "g_loss": 1.5, "d_real": 0.6, "d_fake": 0.4, "images_per_sec": 3.0})
    yield RunFinished(logged[-1], "completed")


def test_off_a_terminal_progress_is_plain_lines_at_a_steady_interval(screen, tmp_path):
    buffer = screen(terminal=False)
    progress = console.RunProgress("tiny", interval=60)
    with progress:
        for event in steps(tmp_path, screen.clock, 10, [2, 4, 6, 8, 10, 12, 14, 16], 16):
            progress.handle(event)
    lines = buffer.getvalue().splitlines()
    shown = [int(re.search(r"step (\d+)/16", line).group(1)) for line in lines if "step " in line]
    assert shown == [2, 8, 14, 16], "the first, then one a minute (a log every 20 s), then the last"
    assert "\x1b[" not in buffer.getvalue()
    assert "tiny  step 2/16 (12%)  epoch 0  D 0.700  G 1.500  D(x) 0.60  D(G(z)) 0.40  3 img/s" in lines[1]
    assert lines[1].endswith("elapsed 0:20  eta 2:20")


def test_the_eta_shows_on_a_terminal_even_when_steps_take_minutes(screen, tmp_path):
    buffer = screen(terminal=True)
    progress = console.RunProgress("slow")
    with progress:
        for event in steps(tmp_path, screen.clock, 180, [2], 100):
            progress.handle(event)
            if isinstance(event, StepLogged):
                assert progress.progress.tasks[0].fields["eta"] == "4:54:00"
    assert "eta 4:54:00" in buffer.getvalue()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_on_an_80_column_terminal_the_step_losses_and_eta_stay_visible(screen, tmp_path):
    buffer = screen(terminal=True, width=80)
    progress = console.RunProgress("dcgan_mnist-lr_g0.0002-g_hidden256")
    with progress:
        for event in steps(tmp_path, screen.clock, 7.5, [10, 20], 4685):
            progress.handle(event)
            if isinstance(event, StepLogged):
                progress.handle(EvalLogged(event.step, 0, {"fid": 123.4, "kid": 0.0456, "kid_std": 0.01}))
    last = [line for line in plain(buffer.getvalue()).splitlines() if "/4685" in line][-1]
    assert len(last.rstrip()) <= 80, last
    assert "20/4685" in last and "D 0.700" in last and "G 1.500" in last, last
    assert last.rstrip().endswith("eta 1:56:37"), last  # 1.5 s a step, 4,665 to go
    wide = console.fitted_line(progress.progress.tasks[0], 200)
    shown = Console(file=io.StringIO(), width=200, record=True, force_terminal=True)
    shown.print(wide)
    text = shown.export_text()
    assert "━" in text and "D(G(z)) 0.40" in text and "FID 123.4" in text, text
    assert "elapsed 0:30" in text, "elapsed time by the console's clock"


def test_the_eta_is_the_sooner_of_the_steps_and_the_time_budget(screen, tmp_path):
    buffer = screen(terminal=False)
    progress = console.RunProgress("budget", interval=0)
    with progress:
        progress.handle(RunStarted(tmp_path, 0, 1000, 100, 64, max_seconds=120.0, seconds_spent=30.0))
        screen.clock.now += 20
        progress.handle(StepLogged(10, 0, {"d_loss": 0.7}, seconds_spent=40.0))  # 10 budget seconds in 20 s
        screen.clock.now += 20
        progress.handle(StepLogged(20, 0, {"d_loss": 0.7}, seconds_spent=50.0))
    lines = [line for line in buffer.getvalue().splitlines() if " step " in line]
    assert lines[0].endswith("eta 2:40"), "budget: 80 s left at 2 s a second, sooner than 1:05:20 of steps"
    assert lines[1].endswith("eta 2:20"), lines
    without = console.RunProgress("steps")
    without.handle(RunStarted(tmp_path, 0, 100, 100, 64))
    screen.clock.now += 10
    without.handle(StepLogged(10, 0, {"d_loss": 0.7}, seconds_spent=5.0))
    assert buffer.getvalue().splitlines()[-1].endswith("eta 1:30"), "no budget: the steps' ETA, from the first log"


def test_a_run_logs_plain_progress_lines_when_output_is_a_file(write_recipe, tmp_path):
    result = CliRunner().invoke(main, ["run", str(write_recipe()), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert re.search(r"^tiny  step 2/6 \(33%\)  epoch 0  D .* eta 0:\d\d$", result.output, re.M), result.output
    assert re.search(r"^tiny  step 6/6 \(100%\) .* eta 0:00$", result.output, re.M), result.output


def test_a_sweeps_batch_table_fits_80_columns_and_its_rows_differ(tmp_path):
    outcomes = [
        Outcome(f"dcgan_mnist-lr_g{lr}-g_hidden{width}", status, "torch", "", steps, seconds,
                {"d_loss": 0.512, "g_loss": 1.234}, tmp_path / f"{n:05d}-dcgan_mnist-lr_g{lr}-g_hidden{width}",
                {"train.lr_g": lr, "architecture.g_hidden": [width]})
        for n, (lr, width, status, steps, seconds) in enumerate([
            (0.0001, 16, "completed", 4685, 812.0), (0.0001, 32, "completed", 4685, 3723.0),
            (0.0002, 16, "interrupted", 200, 31.0), (0.0002, 32, "diverged", 12, 2.0)])]
    outcomes.append(Outcome("recipes/broken.toml", "invalid", message="bad key"))
    screen = Console(file=io.StringIO(), width=80, record=True)
    console.batch_table(outcomes, screen)
    text = screen.export_text()
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "(torch)" in text and "backend" not in text, "one backend for all: named in the title"
    rows = [line for line in lines if re.match(r"\s*\d{5}-", line)]
    assert len(rows) == 4 and len({re.sub(r"\s+", " ", row.split("…")[-1]) for row in rows}) == 4
    for row, (lr, width) in zip(rows, [("0.0001", 16), ("0.0001", 32), ("0.0002", 16), ("0.0002", 32)]):
        assert re.search(rf"{lr}\s+\[{width}\]", row), row
    assert "1:02:03" in text and "interrupted" in text and "invalid" in text
