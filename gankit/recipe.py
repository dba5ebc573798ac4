"""A TOML recipe, read and validated before any work starts.

Every error is a RecipeError whose message is one line naming the file, the key and a fix.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gankit.registry import Component, Registry
from gankit.train_config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SECTIONS = ("dataset", "architecture", "backend")
TOP_LEVEL = ("name", "seed", *SECTIONS, "train", "export", "gankit")
"""``gankit`` is the provenance table a run writes into its resolved recipe; it is ignored on reading."""


class RecipeError(Exception):
    """A recipe that cannot be run. The message is the whole one-line explanation."""


@dataclass(frozen=True)
class Choice:
    """A component a recipe picked with ``use = "..."``, and its validated parameters."""

    component: Component
    params: BaseModel | None

    @property
    def name(self) -> str:
        return self.component.name

    def as_table(self) -> dict[str, Any]:
        values = self.params.model_dump(mode="json", exclude_none=True) if self.params is not None else {}
        return {"use": self.component.name, **values}


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    seed: int
    dataset: Choice
    architecture: Choice
    backend: Choice
    train: TrainConfig
    exports: tuple[Choice, ...]

    def as_dict(self) -> dict[str, Any]:
        """The fully resolved recipe: every default filled in, ready to write as TOML."""
        return {
            "name": self.name,
            "seed": self.seed,
            **{section: getattr(self, section).as_table() for section in SECTIONS},
            "train": self.train.model_dump(mode="json", exclude_none=True),
            "export": [choice.as_table() for choice in self.exports],
        }


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file; check the path") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, not a recipe file") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read: {error}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: read as a TOML value (``3``, ``2e-4``, ``true``, ``[1, 2]``,
    ``"x"``), else taken as a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str], path: Path) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides; a number in the path indexes a list
    (``export.0.every=100``)."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {override!r}: expected KEY=VALUE, e.g. --set train.epochs=1")
        parts = key.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = _list_item(node, part, parts[: depth + 1], path)
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise RecipeError(f"{path}: --set {key}: {'.'.join(parts[: depth + 1])} is not a table")
        last = parts[-1]
        if isinstance(node, list):
            index = _index(last, node, parts, path)
            node[index] = parse_value(text)
        else:
            node[last] = parse_value(text)
    return data


def _index(part: str, items: list, parts: list[str], path: Path) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(f"{path}: --set {'.'.join(parts)}: {part!r} is not an index below {len(items)}")
    return int(part)


def _list_item(items: list, part: str, parts: list[str], path: Path):
    return items[_index(part, items, parts, path)]


def _format_validation(path: Path, prefix: str, error: ValidationError, params: type[BaseModel] | None) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    key = f"{prefix}.{loc}" if loc else prefix
    if first["type"] == "extra_forbidden":
        known = sorted(params.model_fields) if params is not None else []
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known) or 'none'}"
        return f"{path}: {key}: unknown key; {hint}"
    message = first["msg"].removeprefix("Value error, ")
    got = f" (got {first['input']!r})" if first["type"] not in ("missing",) and loc else ""
    return f"{path}: {key}: {message}{got}"


def _validate(model: type[BaseModel] | None, values: dict, path: Path, prefix: str) -> BaseModel | None:
    if model is None:
        if values:
            raise RecipeError(f"{path}: {prefix}.{next(iter(values))}: unknown key; this component takes no parameters")
        return None
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise RecipeError(_format_validation(path, prefix, error, model)) from None


def _choice(table: Any, kind: str, prefix: str, path: Path, registry: Registry) -> Choice:
    if not isinstance(table, dict):
        raise RecipeError(f"{path}: {prefix}: expected a table with use = \"...\"")
    values = dict(table)
    use = values.pop("use", None)
    if not isinstance(use, str):
        names = ", ".join(c.name for c in registry.of_kind(kind)) or "none installed"
        raise RecipeError(f'{path}: {prefix}.use: missing; name a {kind} ({names})')
    try:
        component = registry.get(kind, use)
    except LookupError as error:
        raise RecipeError(f"{path}: {prefix}.use: {error}") from None
    return Choice(component, _validate(component.params, values, path, prefix))


def build_recipe(data: dict[str, Any], path: Path, registry: Registry) -> Recipe:
    for key in data:
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(key, TOP_LEVEL, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(TOP_LEVEL)}"
            raise RecipeError(f"{path}: {key}: unknown key; {hint}")
    for section in SECTIONS:
        if section not in data:
            raise RecipeError(f'{path}: [{section}]: missing; add a [{section}] table with use = "..."')
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise RecipeError(f"{path}: name: use letters, digits, '-', '_' and '.' only (got {name!r})")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise RecipeError(f"{path}: seed: must be an integer in [0, 2**32) (got {seed!r})")
    train = data.get("train", {})
    if not isinstance(train, dict):
        raise RecipeError(f"{path}: train: expected a [train] table")
    exports = data.get("export", [])
    if not isinstance(exports, list):
        raise RecipeError(f'{path}: export: expected [[export]] tables, each with use = "..."')
    return Recipe(
        path=path,
        name=name,
        seed=seed,
        dataset=_choice(data["dataset"], "dataset", "dataset", path, registry),
        architecture=_choice(data["architecture"], "architecture", "architecture", path, registry),
        backend=_choice(data["backend"], "backend", "backend", path, registry),
        train=_validate(TrainConfig, train, path, "train"),
        exports=tuple(_choice(t, "exporter", f"export.{i}", path, registry) for i, t in enumerate(exports)),
    )


def load_recipe(path: Path, overrides: list[str], registry: Registry) -> Recipe:
    return build_recipe(apply_overrides(read_toml(path), overrides, path), path, registry)
