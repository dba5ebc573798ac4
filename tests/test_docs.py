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
