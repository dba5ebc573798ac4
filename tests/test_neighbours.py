"""A bad neighbour never takes gankit down: each case is an outside package, installed
as pip would install it (tests/conftest.py OUTSIDE_PACKAGES), beside the bundled plugins."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gankit.cli import main
from gankit.plugins import load_registry


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def problems(registry) -> str:
    return "\n".join(registry.problems())


def test_a_misspelled_hook_is_listed_as_broken_and_the_rest_works(install):
    install("typo-gankit")
    registry = load_registry()
    assert [b.name for b in registry.broken] == ["typo"]
    assert registry.problems() == [
        "plugin 'typo' (typo-gankit 0.1) is broken: unknown hook 'register_architecture'; "
        "did you mean 'register_architectures'?; silence it with GANKIT_DISABLE_PLUGINS=typo"
    ]
    assert registry.get("architecture", "dcgan").provider == "builtin"
    result = cli("list-plugins")
    assert result.exit_code == 0 and "unknown hook 'register_architecture'" in result.output


def test_a_second_dcgan_makes_only_dcgan_unusable(install, write_recipe, tmp_path):
    install("clash-gankit")
    registry = load_registry()
    assert registry.problems() == [
        "two plugins claim the architecture 'dcgan': builtin (plugin 'dcgan') and clash-gankit 0.1 (plugin 'clash'); "
        "GANKIT_DISABLE_PLUGINS=clash keeps builtin's; GANKIT_DISABLE_PLUGINS=dcgan keeps clash-gankit 0.1's"
    ]
    assert registry.get("exporter", "clash-csv").provider == "clash-gankit 0.1"
    assert cli("list-plugins").exit_code == 0

    dcgan = cli("run", write_recipe("dcgan.toml", architecture={"use": "dcgan"}), "--dry-run")
    assert dcgan.exit_code == 2 and "Traceback" not in dcgan.output
    assert "architecture.use: two plugins claim the architecture 'dcgan'" in dcgan.output

    trained = cli("run", write_recipe(train={"steps": 2}), "--runs-dir", tmp_path / "runs")
    assert trained.exit_code == 0, trained.output
    assert trained.output.count("warning: ignoring broken or conflicting plugins (the architecture 'dcgan')") == 1
    assert json.loads((tmp_path / "runs" / "00000-tiny" / "summary.json").read_text())["status"] == "completed"


def test_the_disable_line_silences_the_conflict(install, monkeypatch):
    install("clash-gankit")
    monkeypatch.setenv("GANKIT_DISABLE_PLUGINS", "clash")
    registry = load_registry()
    assert registry.problems() == []
    assert registry.get("architecture", "dcgan").provider == "builtin"


def test_an_entry_point_named_png_is_loaded_beside_the_bundled_one_and_listed(install, monkeypatch):
    install("png-gankit")
    registry = load_registry()
    assert registry.get("exporter", "fancy-png").provider == "png-gankit 0.1"
    assert registry.get("exporter", "png").provider == "builtin"
    assert registry.problems() == [
        "two plugins claim the entry-point name 'png': builtin (plugin 'gankit:png') and png-gankit 0.1 "
        "(plugin 'png-gankit:png'); GANKIT_DISABLE_PLUGINS=png-gankit:png keeps builtin's; "
        "GANKIT_DISABLE_PLUGINS=gankit:png keeps png-gankit 0.1's"
    ]
    monkeypatch.setenv("GANKIT_DISABLE_PLUGINS", "png-gankit:png")
    silenced = load_registry()
    assert silenced.problems() == [] and silenced.get("exporter", "png").plugin == "png"
    with pytest.raises(LookupError):
        silenced.get("exporter", "fancy-png")


def test_a_plugin_needing_another_api_version_is_broken_with_the_reason(install):
    install("future-gankit")
    assert load_registry().problems() == [
        "plugin 'future' (future-gankit 0.1) is broken: needs plugin API >=2,<3, this gankit has 1.0; "
        "upgrade gankit or the plugin; silence it with GANKIT_DISABLE_PLUGINS=future"
    ]


def test_list_plugins_kind_still_shows_broken_plugins_and_that_kinds_conflicts(install):
    install("typo-gankit", "clash-gankit")
    architectures = cli("list-plugins", "--kind", "architecture")
    assert architectures.exit_code == 0
    assert "typo" in architectures.output and "two plugins claim the architecture 'dcgan'" in architectures.output
    exporters = json.loads(cli("list-plugins", "--kind", "exporter", "--json").output)
    assert [b["name"] for b in exporters["broken"]] == ["typo"] and exporters["conflicts"] == []
    assert "clash-csv" in [p["name"] for p in exporters["plugins"]]


def test_strict_mode_is_one_line_per_problem(install, monkeypatch):
    install("typo-gankit", "clash-gankit", "future-gankit")
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    result = cli("list-plugins")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
    assert "'future'" in lines[0] and "'typo'" in lines[1] and "'dcgan'" in lines[2]


def test_list_plugins_json_shows_the_api_version():
    from gankit import API_VERSION

    assert json.loads(cli("list-plugins", "--json").output)["api_version"] == API_VERSION == "1.0"
