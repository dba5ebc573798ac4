"""What the plugin contract promises an exporter, held to its documented word."""

from __future__ import annotations

from conftest import recipe_dict
from gankit import hookimpl
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
