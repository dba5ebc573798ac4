"""Every hook is documented, in its docstring and in the README, and reaches the registry."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from gankit import hookspecs
from gankit.plugins import HOOK_KINDS, load_registry
from gankit.registry import KINDS

HOOKS = [name for name, value in vars(hookspecs).items() if name.startswith("register_") and inspect.isfunction(value)]
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


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
