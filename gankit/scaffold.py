"""``gankit new-plugin``: write a ready plugin package from the templates in
``gankit/templates/plugin`` (the package in ``examples/gankit-example-plugin`` is their
output for every kind)."""

from __future__ import annotations

import re
from pathlib import Path

from gankit.errors import GankitError

PLUGIN_KINDS = ("architecture", "dataset", "exporter", "metric")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
TEMPLATES = {
    "pyproject.toml.j2": "pyproject.toml",
    "README.md.j2": "README.md",
    "recipe.toml.j2": "recipe.toml",
    "package/__init__.py.j2": "{module}/__init__.py",
    "tests/test_plugin.py.j2": "tests/test_plugin.py",
}


class ScaffoldError(GankitError):
    """A name or place gankit new-plugin cannot use; the message is one line."""


def render(name: str, kinds: list[str]) -> dict[str, str]:
    """The package's files, by path relative to its folder, for plugin ``name`` providing
    one component of each of ``kinds``, all named ``name``."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    if not NAME.match(name) or len(name) > 40:
        raise ScaffoldError(f"{name!r}: use lowercase letters, digits and single hyphens, starting with a letter "
                            "(at most 40 characters), e.g. wide-mlp")
    kinds = [kind for kind in PLUGIN_KINDS if kind in kinds]
    if not kinds:
        raise ScaffoldError(f"--kind: give at least one of {', '.join(PLUGIN_KINDS)}")
    module = "gankit_" + name.replace("-", "_")
    values = {
        "name": name,
        "kinds": kinds,
        "module": module,
        "distribution": f"gankit-{name}",
        "classname": "".join(part.capitalize() for part in name.split("-")),
        "provides": _sentence([f"an {kind}" if kind[0] in "ae" else f"a {kind}" for kind in kinds]),
        "checks": [f"check_{kind}" for kind in kinds],
    }
    environment = Environment(loader=PackageLoader("gankit", "templates/plugin"), trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=StrictUndefined)
    return {target.format(module=module): environment.get_template(template).render(values)
            for template, target in TEMPLATES.items()}


def _sentence(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def write_plugin(name: str, kinds: list[str], parent: Path) -> Path:
    """Write the package for ``name`` into ``parent/gankit-NAME``, which must not exist yet."""
    files = render(name, kinds)
    folder = parent / f"gankit-{name}"
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists; choose another name or remove it")
    try:
        for relative, text in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as error:
        raise ScaffoldError(f"cannot write {folder}: {error.strerror or error}") from None
    return folder
