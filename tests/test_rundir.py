"""The run directory as one object, the import graph of the core, and exporters that
depend on one another."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gankit.cli import main
from gankit import checkpoints
from gankit.rundir import RunDir, RunError
from gankit.safekeeping import lock

CORE = Path(__file__).resolve().parent.parent / "gankit"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of the ``gankit`` package in ``package`` -> the modules of it that it
    imports, at module level or inside a function."""
    graph = {}
    for module in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            found |= {name for name in names if name.startswith("gankit.") and (package / f"{name[7:]}.py").is_file()}
        graph[f"gankit.{module.stem}"] = found - {f"gankit.{module.stem}"}
    return graph


def test_the_core_has_no_import_cycle():
    graph = import_graph(CORE)
    assert "gankit.rundir" in graph["gankit.training"], "the walk sees imports"
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle in gankit/: {' -> '.join(error.args[1])}")


def test_an_import_cycle_is_detected(tmp_path):
    """The check above can fail: two modules importing each other (one lazily) form a cycle."""
    (tmp_path / "a.py").write_text("from gankit.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from gankit.a import y\n")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(import_graph(tmp_path)).prepare()


def test_run_directories_are_numbered_and_the_latest_is_the_highest(tmp_path):
    assert RunDir.latest(tmp_path / "none") is None
    first = RunDir.create(tmp_path / "runs", "a")
    (tmp_path / "runs" / "00007-b").mkdir()
    (tmp_path / "runs" / "notes").mkdir()
    second = RunDir.create(tmp_path / "runs", "c")
    assert (first.name, second.name) == ("00000-a", "00008-c")
    assert RunDir.latest(tmp_path / "runs") == second
    assert second.recipe == second.path / "recipe.toml" and second.best == second.path / "checkpoints" / "best"
    assert second.is_empty() and not second.is_run()


class FakeTrainer:
    """Writes one file per checkpoint and remembers what it loaded."""

    def __init__(self):
        self.loaded: list[tuple[Path, bool]] = []

    def save(self, directory: Path) -> None:
        (directory / "weights.bin").write_bytes(b"w" * 10)

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        self.loaded.append((directory, generator_only))


def test_checkpoints_are_saved_pruned_resolved_and_loaded(tmp_path):
    run = RunDir.create(tmp_path, "x")
    trainer = FakeTrainer()
    for step in (2, 4, 6):
        checkpoints.save(run, trainer, step, {"epoch": 0}, keep=2)
    checkpoints.save_best(run, trainer, {"step": 4, "scores": {"fid": 3.0}})
    assert [p.name for p in run.list_checkpoints()] == ["step_00000004", "step_00000006"]
    assert checkpoints.best_meta(run)["scores"] == {"fid": 3.0}
    assert checkpoints.resolve(run) == run.checkpoint(6)
    assert checkpoints.resolve(run, "best") == run.best
    with pytest.raises(RunError, match="known: best, step_00000004, step_00000006"):
        checkpoints.resolve(run, "step_00000002")

    path, meta = checkpoints.load(run, trainer, generator_only=True)
    assert (path, meta["step"], trainer.loaded[-1]) == (run.checkpoint(6), 6, (run.checkpoint(6), True))

    (run.checkpoint(6) / "weights.bin").write_bytes(b"damaged")
    with pytest.raises(RunError, match="step_00000004: delete .*step_00000006 to use it"):
        checkpoints.load(run, trainer)
    assert checkpoints.last_good(run) == run.checkpoint(4)


def test_gif_without_png_is_a_one_line_error_before_anything_runs(write_recipe, tmp_path):
    recipe = write_recipe(export=[{"use": "gif"}])
    for command in (["run", str(recipe), "--dry-run"], ["run", str(recipe), "--runs-dir", str(tmp_path / "runs")]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "export.0: 'gif' works from what the 'png' exporter writes; add [[export]] use = \"png\"" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_the_lock_refuses_a_second_holder_and_goes_when_its_block_ends(tmp_path):
    run = RunDir(tmp_path / "00000-tiny")
    run.path.mkdir()
    with lock(run):
        assert (run.path / ".lock").is_file()
        with pytest.raises(RunError, match="in use by another gankit process"):
            with lock(run):
                pass
    assert not (run.path / ".lock").exists()
    with pytest.raises(ValueError):
        with lock(run):
            raise ValueError("a run that failed")
    assert not (run.path / ".lock").exists()
    (run.path / ".lock").write_text("")  # what a killed process leaves: the file, unlocked
    with lock(run):
        pass
    assert list(run.path.iterdir()) == []


def test_a_finished_run_leaves_no_lock(finished_run):
    assert (finished_run / "summary.json").is_file()
    assert not (finished_run / ".lock").exists()


def contract_modules() -> set[str]:
    """The modules docs/plugins.md lets a plugin import, less the kit (which runs plugins, so stands on the engine)."""
    docs = (CORE.parent / "docs" / "plugins.md").read_text()
    listed = re.findall(r"^\| `(gankit\.\w+)` \|", docs[docs.index("## What you may import"):], re.M)
    return set(listed) - {"gankit.testing"} | {"gankit.__init__"}


FLOOR_HELPERS = {"gankit.features", "gankit.schedules", "gankit.augment", "gankit.values"}
"""Private modules the contract rests on: importable by it, not by plugins."""


def test_the_contract_imports_nothing_from_the_engine():
    graph = import_graph(CORE)
    contract = contract_modules()
    assert {"gankit.rundir", "gankit.evaluation", "gankit.nn"} <= contract
    floor = contract | FLOOR_HELPERS
    for module in sorted(contract | FLOOR_HELPERS):
        reached = {name if name in graph else name.rsplit(".", 1)[0] for name in graph[module]}
        assert reached <= floor, f"{module} imports the engine: {sorted(reached - floor)}"
