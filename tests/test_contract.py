"""What the plugin contract promises an exporter, held to its documented word."""

from __future__ import annotations

import ast
from pathlib import Path

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
    from gankit.errors import PluginFault
    from gankit.evaluation import EvalError
    from gankit.nn import ShapeError
    from gankit.recipe import RecipeError
    from gankit.registry import RegistryError
    from gankit.report import ReportError
    from gankit.rundir import RunError
    from gankit.scaffold import ScaffoldError
    from gankit.search import SearchError

    return [BackendError, CheckpointError, CompareError, DataError, EvalError, PluginFault, ShapeError, RecipeError,
            RegistryError, ReportError, RunError, ScaffoldError, SearchError]


@pytest.mark.parametrize("error_type", _family(), ids=lambda error_type: error_type.__name__)
def test_every_error_of_the_family_is_one_line_through_the_command_line(error_type, tmp_path, monkeypatch):
    """The command line catches GankitError alone: any member raised below a command is its line."""
    import gankit.compare
    from gankit.errors import GankitError

    assert issubclass(error_type, GankitError)

    said = f"{error_type.__name__} said what was wrong; here is how to fix it"
    arguments = {"CheckpointError": (tmp_path / "state.pt", said), "PluginFault": ("architecture", said)}
    error = error_type(*arguments.get(error_type.__name__, (said,)))

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(gankit.compare, "compare", broken)
    (tmp_path / "00000-a").mkdir()
    result = CliRunner().invoke(main, ["compare", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {error}"] and said in str(error)


CORE = Path(__file__).resolve().parent.parent / "gankit"


def _bundled() -> tuple[set[str], set[str]]:
    """The bundled plugins' component names (three characters or more: "is" is also a word)
    and the names of their parameters that no core model or dataclass also declares."""
    registry = load_registry()
    bundled = [c for c in registry.components.values() if c.provider == "builtin"]
    names = {c.name for c in bundled if len(c.name) >= 3}
    params = {field for c in bundled if c.params is not None for field in c.params.model_fields}
    core_fields = {node.target.id for path in CORE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    return names, params - core_fields


def mentions_of_bundled_plugins(source: str, names: set[str], params: set[str]) -> list[str]:
    """Where ``source`` names a bundled plugin in code: a string equal to a component's name
    (docstrings, ``__all__``, messages that only show an example and ``format="png"`` are
    not code), or a parameter only a bundled plugin declares read from a component's
    parameters (``params.conditional``, ``getattr(params, "conditional")``)."""
    tree = ast.parse(source)
    prose = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    prose |= {id(keyword.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
              for keyword in node.keywords if keyword.arg == "format"}
    prose |= {id(item) for node in ast.walk(tree) if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets) for item in ast.walk(node)}

    def of_params(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id == "params") or (
            isinstance(node, ast.Attribute) and node.attr == "params")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if node.value in names:
                found.append(f"line {node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr in params and of_params(node.value):
            found.append(f"line {node.lineno}: .params.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and of_params(node.args[0]) and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in params):
            found.append(f"line {node.lineno}: getattr(params, {node.args[1].value!r})")
    return found


def test_no_core_module_names_a_bundled_plugin_or_its_parameters():
    names, params = _bundled()
    assert {"dcgan", "mnist", "domain", "png"} <= names and {"conditional", "g_hidden", "weights"} <= params
    found = {path.relative_to(CORE).as_posix(): hits for path in sorted(CORE.rglob("*.py"))
             if (hits := mentions_of_bundled_plugins(path.read_text(), names, params))}
    assert not found, f"the core names bundled plugins (leave it to the plugins, or to their defaults): {found}"


def test_the_check_of_bundled_names_finds_them_in_code_and_not_in_prose():
    names, params = {"dcgan", "png"}, {"conditional"}
    code = ('"""The dcgan plugin."""\n'
            'def f(table, figure, buffer):\n'
            '    """Uses png."""\n'
            '    figure.savefig(buffer, format="png")\n'
            '    if table.use == "dcgan":\n'
            '        return table.params.conditional or getattr(table.params, "conditional")\n'
            '    return {"conditional": re.compile("x").group}\n')
    assert mentions_of_bundled_plugins(code, names, params) == [
        "line 5: 'dcgan'", "line 6: .params.conditional", "line 6: getattr(params, 'conditional')"]
