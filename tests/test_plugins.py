"""The plugin manager: a fresh one per test, fakes passed in directly."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from importlib import metadata

import pytest
from click.testing import CliRunner

from conftest import PATIENCE
from gankit import hookimpl
from gankit.cli import main
from gankit.params import Params
from gankit.plugins import load_registry, make_plugin_manager
from gankit.registry import RegistryError


class FakeArchitecture:
    """A third-party plugin, as an object with hook implementations."""

    class ToyParams(Params):
        width: int = 8

    @hookimpl
    def register_architectures(self, register):
        register("toy", lambda params, spec: None, params=self.ToyParams, requires=("torch", "no_such_module_xyz"),
                 description="a toy architecture")


def test_a_fake_plugin_is_registered_with_its_provider():
    registry = load_registry([("toyplugin", FakeArchitecture(), "toy-gan 1.2")], entry_points=False)
    component = registry.get("architecture", "toy")
    assert component.provider == "toy-gan 1.2"
    assert component.params is FakeArchitecture.ToyParams
    assert component.missing_requirements() == ["no_such_module_xyz"]


def test_bundled_plugins_come_through_entry_points_as_builtin():
    registry = load_registry()
    for kind, name in [("dataset", "mnist"), ("architecture", "dcgan"), ("backend", "torch"), ("exporter", "png")]:
        assert registry.get(kind, name).provider == "builtin"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(LookupError, match="did you mean 'dcgan'"):
        load_registry().get("architecture", "dcgna")


def test_two_plugins_claiming_one_name_make_only_that_name_unusable():
    class Clash:
        @hookimpl
        def register_architectures(self, register):
            register("dcgan", lambda p, s: None, description="another dcgan")

    registry = load_registry([("clash", Clash(), "clash-dist 0.1")])
    with pytest.raises(LookupError, match="architecture 'dcgan'") as raised:
        registry.get("architecture", "dcgan")
    assert "builtin" in str(raised.value) and "clash-dist 0.1" in str(raised.value)
    assert registry.get("architecture", "mlp").provider == "builtin"


def test_a_misspelled_hook_makes_its_plugin_broken():
    misspelled = types.SimpleNamespace(register_architecture=hookimpl(lambda register: None))
    pm, _, broken, _ = make_plugin_manager([("typo", misspelled, "typo 1.0")], entry_points=False)
    assert [b.name for b in broken] == ["typo"]
    assert "did you mean 'register_architectures'?" in broken[0].error
    assert not pm.has_plugin("typo")
    pm.check_pending()


def _broken_entry_point(monkeypatch):
    broken = metadata.EntryPoint(name="brokenplugin", value="no_such_package_xyz.plugin", group="gankit")
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return found + [broken] if kwargs.get("group") == "gankit" else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_a_broken_entry_point_is_listed_not_fatal(monkeypatch):
    _broken_entry_point(monkeypatch)
    registry = load_registry()
    assert "brokenplugin" in [b.name for b in registry.broken]
    assert "ModuleNotFoundError" in registry.broken[0].error
    assert registry.get("architecture", "dcgan")
    result = CliRunner().invoke(main, ["list-plugins"])
    assert result.exit_code == 0
    assert "broken or conflicting plugins" in result.output
    assert "plugin 'brokenplugin' (unknown) is broken: ModuleNotFoundError" in result.output


def _plugin_module(monkeypatch, tmp_path, name: str, code: str) -> None:
    """An entry point to a module ``name`` that runs ``code`` when imported."""
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    extra = metadata.EntryPoint(name=name, value=name, group="gankit")
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kwargs: [*real(**kwargs), *([extra] if kwargs.get("group") == "gankit" else [])])


def test_a_plugin_that_exits_at_import_is_broken_not_fatal(monkeypatch, tmp_path):
    _plugin_module(monkeypatch, tmp_path, "exiting_plugin", "import sys\nsys.exit(3)\n")
    assert "exiting_plugin" in [b.name for b in load_registry().broken]


def test_ctrl_c_while_a_plugin_imports_stops_gankit(monkeypatch, tmp_path):
    """The start-up handler's exit passes through the loader that catches a plugin's own
    sys.exit: once, a Ctrl-C that landed there marked the plugin broken and the run went on."""
    import signal

    from gankit.interrupt import Interrupted, interrupted

    _plugin_module(monkeypatch, tmp_path, "ctrl_c_plugin", "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        with pytest.raises(Interrupted) as stopped:
            load_registry()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.code == 130


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    _broken_entry_point(monkeypatch)
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    with pytest.raises(RegistryError, match="plugin 'brokenplugin' .* ModuleNotFoundError"):
        load_registry()


def test_a_plugin_whose_hook_raises_is_broken_and_registers_nothing():
    class Faulty:
        @hookimpl
        def register_datasets(self, register):
            register("half", lambda p, c: None, description="registered before the failure")
            raise RuntimeError("boom")

    registry = load_registry([("faulty", Faulty(), "faulty 0.1")], entry_points=False)
    assert registry.of_kind("dataset") == []
    assert registry.broken[0].error == "RuntimeError: boom"


def test_a_plugin_can_be_disabled_by_name(monkeypatch):
    monkeypatch.setenv("GANKIT_DISABLE_PLUGINS", "gif,tensorboard,mlflow,wandb")
    assert [c.name for c in load_registry().of_kind("exporter") if c.provider == "builtin"] == ["png"]


def test_list_plugins_json_and_kind_filter():
    result = CliRunner().invoke(main, ["list-plugins", "--json", "--kind", "backend"])
    assert result.exit_code == 0
    listed = json.loads(result.output)
    torch_row = next(p for p in listed["plugins"] if p["name"] == "torch")
    assert torch_row["kind"] == "backend" and torch_row["provider"] == "builtin"
    assert torch_row["requires"] == {"torch": True, "safetensors": True}
    assert {p["kind"] for p in listed["plugins"]} == {"backend"}


def test_list_plugins_table_groups_by_kind():
    result = CliRunner().invoke(main, ["list-plugins"])
    assert result.exit_code == 0
    for heading in ("datasets", "architectures", "backends", "exporters"):
        assert heading in result.output
    assert "mnist" in result.output and "dcgan" in result.output


@pytest.mark.parametrize("args", [["--help"], ["list-plugins"], ["list-plugins", "--json"], ["run", "--help"]])
def test_help_and_list_plugins_import_no_framework(args):
    """Nor numpy: these commands only print, and start in a fraction of a second (benchmarks/startup.py)."""
    code = (
        "import sys\n"
        "from gankit.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'numpy', 'ray') if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE)
    assert "HEAVY=" in result.stderr
    assert result.stderr.rsplit("HEAVY=", 1)[1].strip() == ""


def test_a_missing_module_is_named_with_no_made_up_extra(monkeypatch):
    import gankit.registry

    monkeypatch.setattr(gankit.registry, "_installed", lambda module: module not in ("PIL", "torch"))
    registry = load_registry()
    assert registry.get("dataset", "image-folder").requirement_problem() == (
        "dataset 'image-folder' (builtin) needs the module 'PIL', which is not installed; "
        "install the package that provides 'PIL' (a requirement of gankit)")
    assert registry.get("backend", "torch").requirement_problem().endswith("pip install 'gankit[torch]'")


def test_list_plugins_gives_the_command_that_installs_a_missing_module(monkeypatch):
    import json

    import gankit.registry

    monkeypatch.setattr(gankit.registry, "_installed", lambda module: module not in ("PIL", "tensorboardX"))
    result = CliRunner().invoke(main, ["list-plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  exporter tensorboard needs tensorboardX: pip install 'gankit[tensorboard]'" in lines, result.output
    assert "  dataset image-folder needs PIL: pip install PIL" in lines, "no extra brings it: the module itself"
    assert not any("torch:" in line for line in lines), "what is installed needs nothing"
    listed = json.loads(CliRunner().invoke(main, ["list-plugins", "--json"]).output)["plugins"]
    board = next(row for row in listed if row["name"] == "tensorboard")
    assert board["install"] == {"tensorboardX": "pip install 'gankit[tensorboard]'"}
