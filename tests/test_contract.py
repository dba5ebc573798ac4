"""What the plugin contract promises an exporter, held to its documented word."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import recipe_dict
from gankit import hookimpl
from gankit.cli import main
from gankit.data import DataContext
from gankit.events import RunFinished, SamplesReady
from gankit.plugins import load_registry
from gankit.recipe import build_recipe
from gankit.runner import run


class Listener:
    """An exporter that never asks for samples and keeps every event it gets."""

    sample_every = None
    events: list = []

    def __init__(self, params, run_dir):
        Listener.events = []

    def handle(self, event):
        Listener.events.append(event)


class ListenerPlugin:
    @hookimpl
    def register_exporters(self, register):
        register("listener", Listener, description="keeps the events")


def test_samples_arrive_at_the_end_when_no_exporter_asks_for_them(tiny_mnist, tmp_path):
    registry = load_registry([("listener-plugin", ListenerPlugin(), "test")])
    table = recipe_dict(tiny_mnist, train={"steps": 5, "log_every": 1, "checkpoint_every": 0},
                        export=[{"use": "listener"}])
    run(build_recipe(table, tmp_path / "r.toml", registry), runs_root=tmp_path / "runs",
        context=DataContext(warn=lambda _: None, info=lambda _: None))
    samples = [event for event in Listener.events if isinstance(event, SamplesReady)]
    assert [event.step for event in samples] == [5]
    assert samples[0].images.dtype.name == "uint8" and samples[0].images.ndim == 4
    assert isinstance(Listener.events[-1], RunFinished)


def _family():
    from gankit.backend import BackendError, CheckpointError
    from gankit.compare import CompareError
    from gankit.data import DataError
    from gankit.evaluation import EvalError
    from gankit.nn import ShapeError
    from gankit.recipe import RecipeError
    from gankit.registry import RegistryError
    from gankit.report import ReportError
    from gankit.rundir import RunError
    from gankit.scaffold import ScaffoldError
    from gankit.search import SearchError

    return [BackendError, CheckpointError, CompareError, DataError, EvalError, ShapeError, RecipeError,
            RegistryError, ReportError, RunError, ScaffoldError, SearchError]


@pytest.mark.parametrize("error_type", _family(), ids=lambda error_type: error_type.__name__)
def test_every_error_of_the_family_is_one_line_through_the_command_line(error_type, tmp_path, monkeypatch):
    """The command line catches GankitError alone: any member raised below a command is its line."""
    import gankit.compare
    from gankit.errors import GankitError

    assert issubclass(error_type, GankitError)

    said = f"{error_type.__name__} said what was wrong; here is how to fix it"
    error = error_type(tmp_path / "state.pt", said) if error_type.__name__ == "CheckpointError" else error_type(said)

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(gankit.compare, "compare", broken)
    (tmp_path / "00000-a").mkdir()
    result = CliRunner().invoke(main, ["compare", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {error}"] and said in str(error)
