"""Every hook is documented, in its docstring and in the README, and reaches the registry."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from gankit import hookspecs
from gankit.plugins import HOOK_KINDS, load_registry
from gankit.registry import KINDS

HOOKS = [name for name, value in vars(hookspecs).items() if name.startswith("register_") and inspect.isfunction(value)]
REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
PLUGIN_DOCS = (REPO / "docs" / "plugins.md").read_text()
PUBLIC = re.findall(r"^\| `(gankit(?:\.\w+)?)` \|", PLUGIN_DOCS[PLUGIN_DOCS.index("## What you may import"):], re.M)


def test_there_are_hooks():
    assert len(HOOKS) >= 4


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 40, f"{hook} needs a docstring saying what factory gets and returns"
    assert f"`{hook}`" in README, f"README.md's plugin section does not mention {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_feeds_a_kind_with_bundled_components(hook):
    kind = HOOK_KINDS[hook]
    assert kind in KINDS
    assert load_registry().of_kind(kind), f"no bundled plugin implements {hook}"


def test_the_readme_plugin_example_registers_builds_and_checks_its_ranges(tmp_path):
    from gankit.data import DataSpec
    from gankit.recipe import RecipeError, build_recipe

    section = README[README.index("## Writing a plugin"):]
    source = section[section.index("```python") + len("```python"):]
    module = {}
    exec(compile(source[:source.index("```")], "README.md", "exec"), module)
    plugin = type("ReadmePlugin", (), {"register_architectures": staticmethod(module["register_architectures"])})
    registry = load_registry([("wide-mlp", plugin, "my-gankit-arch 0.1")])
    component = registry.get("architecture", "wide-mlp")
    architecture = component.factory(component.params(width=32), DataSpec(28, 28, 1))
    architecture.check((28, 28, 1), 16)
    recipe = {"dataset": {"use": "mnist"}, "backend": {"use": "torch"}, "train": {"steps": 1},
              "architecture": {"use": "wide-mlp", "width": 0}}
    with pytest.raises(RecipeError, match="architecture.width: Input should be greater than or equal to 1"):
        build_recipe(recipe, tmp_path / "r.toml", registry)


def test_the_plugin_docs_are_linked_and_name_every_hook_and_the_api_version():
    from gankit import API_VERSION

    assert "docs/plugins.md" in README
    assert f"**Plugin API version: {API_VERSION}**" in PLUGIN_DOCS
    for hook in HOOKS:
        assert f"`{hook}`" in PLUGIN_DOCS, f"docs/plugins.md does not document {hook}"


@pytest.mark.parametrize("module", PUBLIC)
def test_each_public_module_declares_its_api(module):
    imported = importlib.import_module(module)
    assert imported.__all__, f"{module} has no __all__"
    assert [name for name in imported.__all__ if not hasattr(imported, name)] == []


def test_bundled_plugins_import_only_the_public_api():
    """What ``plugins/`` imports from gankit is in a public module's ``__all__``: they are
    written exactly as a third party would write them."""
    outside = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {}  # a public module imported by name (`from gankit import nn`): its names read as nn.X
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gankit":
                public = importlib.import_module(node.module).__all__ if node.module in PUBLIC else []
                outside += [f"{path.relative_to(REPO)}: {node.module}.{a.name}" for a in node.names
                            if a.name not in public and f"{node.module}.{a.name}" not in PUBLIC]
                modules.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                                if f"{node.module}.{a.name}" in PUBLIC})
            elif isinstance(node, ast.Import):
                outside += [f"{path.relative_to(REPO)}: {a.name}" for a in node.names
                            if a.name.split(".")[0] == "gankit" and a.name not in PUBLIC]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                module = modules[node.value.id]
                if node.attr not in importlib.import_module(module).__all__:
                    outside.append(f"{path.relative_to(REPO)}: {module}.{node.attr}")
    assert outside == []


def test_a_plugin_written_from_the_plugin_docs_installs_and_passes_the_checks(tmp_path, monkeypatch):
    """The package docs/plugins.md shows — its pyproject's entry point and its module — as an
    installed outside package, passing gankit.testing."""
    from conftest import install_outside_package

    from gankit.recipe import read_toml
    from gankit.testing import check_architecture

    blocks = re.findall(r"```(toml|python)\n(.*?)```", PLUGIN_DOCS[:PLUGIN_DOCS.index("## The hooks")], re.S)
    (pyproject,), (module,) = ([text for kind, text in blocks if kind == wanted] for wanted in ("toml", "python"))
    (tmp_path / "pyproject.toml").write_text(pyproject)
    entry_points = read_toml(tmp_path / "pyproject.toml")["project"]["entry-points"]["gankit"]
    (target,) = entry_points.values()
    monkeypatch.syspath_prepend(str(install_outside_package(tmp_path, "gankit-wide-mlp", target, module, entry_points)))
    assert load_registry().get("architecture", "wide-mlp").provider == "gankit-wide-mlp 0.1"
    check_architecture("wide-mlp", {"width": 32}, backends=["torch"])


def test_the_generated_parts_of_the_plugin_docs_are_the_code_s():
    """The layer and protocol references in docs/plugins.md are what the docstrings say now."""
    from gankit.docs import COMMAND, render

    assert render(PLUGIN_DOCS) == PLUGIN_DOCS, f"docs/plugins.md is out of date; run: {COMMAND}"


def test_every_protocol_of_the_public_api_is_in_the_reference():
    from gankit.docs import PROTOCOLS

    protocols = {(module, name) for module in PUBLIC for name in importlib.import_module(module).__all__
                 if getattr(getattr(importlib.import_module(module), name), "_is_protocol", False)}
    assert protocols - set(PROTOCOLS) == set()
    assert [f"{m}.{n}" for m, n in PROTOCOLS if n not in importlib.import_module(m).__all__] == []


def test_an_undocumented_layer_or_protocol_member_is_refused():
    from dataclasses import dataclass
    from typing import Protocol

    from gankit.docs import UndocumentedError, _members, _own_docstring

    @dataclass(frozen=True)
    class Blur:
        radius: int = 1

    class Sampler(Protocol):
        """What a sampler gives."""

        def draw(self, count: int, *, seed: int = 0) -> list: ...

    with pytest.raises(UndocumentedError, match="Blur has no docstring"):
        _own_docstring(Blur)
    with pytest.raises(UndocumentedError, match=r"give draw\(count: int, \*, seed: int = 0\) -> list a docstring"):
        _members(Sampler)
