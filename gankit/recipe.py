"""A TOML recipe, read and validated before any work starts.

Every error is a RecipeError whose message is one line naming the file, the key and a fix.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gankit.errors import GankitError
from gankit.registry import Component, Registry
from gankit.eval_config import EvalConfig, EvalPlan
from gankit.params import BadParams, Params, checked_params
from gankit.train_config import TrainConfig
from gankit.values import parse_value, tomllib

SECTIONS = ("dataset", "architecture", "backend")
TOP_LEVEL = ("name", "seed", "seeds", *SECTIONS, "train", "export", "eval", "resources", "sweep", "gankit")
"""``gankit`` is the provenance table a run writes into its resolved recipe; it is ignored on reading."""
LISTS_OF_TABLES = ("export",)


class RecipeError(GankitError):
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


class Resources(Params):
    """``[resources]``: what one run of a batch reserves on a Ray cluster (``gankit run --ray``)."""

    cpus: float = Field(1.0, gt=0, le=4096, description="CPU cores")
    gpus: float = Field(0.0, ge=0, le=64, description="GPUs (a fraction shares one)")


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
    sweep: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval: EvalPlan | None = None
    resources: Resources | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fully resolved recipe: every default filled in, ready to write as TOML."""
        return {
            "name": self.name,
            "seed": self.seed,
            **{section: getattr(self, section).as_table() for section in SECTIONS},
            "train": self.train.model_dump(mode="json", exclude_none=True),
            "export": [choice.as_table() for choice in self.exports],
            **({"eval": self.eval.config.model_dump(mode="json", exclude_none=True)} if self.eval else {}),
            **({"resources": self.resources.model_dump(mode="json")} if self.resources else {}),
        }


MAX_RUNS = 10_000
"""The most runs one ``gankit run`` expands its recipes and sweeps into, unless raised with --max-runs."""
MAX_NAME_BYTES = 255 - len("00000-")
"""A run directory is ``NNNNN-<name>`` and file systems allow 255 bytes a name."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise RecipeError(f"{path}: not a regular file (a pipe, socket or device); give a recipe file")
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file; {_closest_recipes(Path(path))}") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, not a recipe file") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise RecipeError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise RecipeError(f"{path}: holds an integer of more than {sys.get_int_max_str_digits():,} digits; "
                          "write a smaller number") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read: {error}") from None


def _closest_recipes(path: Path) -> str:
    """Did-you-mean for a recipe file that is not there: the closest names beside it."""
    folder = path.parent
    try:
        known = [p.name for p in folder.iterdir() if p.suffix == ".toml" and p.is_file()] if folder.is_dir() else []
    except OSError:
        known = []
    close = difflib.get_close_matches(path.name, known, n=3, cutoff=0.8)
    if not close:
        return "check the path"
    return "did you mean " + " or ".join(str(folder / name) for name in close) + "?"


def _table_using(tables: list, name: str) -> int:
    """The index of the table with ``use = name`` in a list of tables, appended when missing;
    a bare ``name`` in the list (``eval.metrics``) becomes that table."""
    for index, table in enumerate(tables):
        if table == name:
            tables[index] = {"use": name}
        if isinstance(tables[index], dict) and tables[index].get("use") == name:
            return index
    tables.append({"use": name})
    return len(tables) - 1


def set_key(data: dict[str, Any], key: str, value: Any, path: Path, origin: str) -> None:
    """Set ``a.b.c`` in nested tables. In a list, a number is an index (``export.0.every``)
    and a name picks the table using that component, added if missing
    (``export.png.every``, ``export.tensorboard={}``)."""
    parts = key.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list) and not part.isdigit():
            index = _table_using(node, part)
            if last:
                if not isinstance(value, dict):
                    raise RecipeError(f"{path}: {origin} {key}: expected a table of settings, e.g. {key}={{}}")
                node[index] = {**node[index], **value}
            else:
                node = node[index]
        elif isinstance(node, list):
            if int(part) >= len(node):
                raise RecipeError(f"{path}: {origin} {key}: {part!r} is not an index below {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif last:
            node[part] = value
        else:
            node = node.setdefault(part, [] if depth == 0 and part in LISTS_OF_TABLES else {})
        if not last and not isinstance(node, (dict, list)):
            raise RecipeError(f"{path}: {origin} {key}: {'.'.join(parts[: depth + 1])} is not a table")


def apply_overrides(data: dict[str, Any], overrides: list[str], path: Path) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {override[:80]!r}: expected KEY=VALUE, e.g. --set train.epochs=1")
        try:
            value = parse_value(text)
        except ValueError:  # Python's limit on the digits of an integer
            raise RecipeError(f"--set {key.strip()}: an integer of more than {sys.get_int_max_str_digits():,} "
                              "digits; give a smaller number") from None
        set_key(data, key, value, path, "--set")
    return data


def _label(value: Any) -> str:
    text = "x".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def expand_sweep(data: dict[str, Any], path: Path,
                 max_runs: int = MAX_RUNS) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The recipes a ``[sweep]`` table of lists stands for: one per combination of values
    (the Cartesian product), each named after its values. Returns (recipe data, sweep values).
    More than ``max_runs`` combinations are refused before any is made."""
    sweep = data.pop("sweep", None)
    seeds = _seeds(data.pop("seeds", None), path)
    if sweep is None and not seeds:
        return [(data, {})]
    if sweep is not None and (not isinstance(sweep, dict) or not sweep):
        raise RecipeError(f'{path}: sweep: expected a table of lists, e.g. "train.lr_g" = [1e-4, 2e-4]')
    sweep = dict(sweep or {})
    if seeds:
        if "seed" in sweep:
            raise RecipeError(f"{path}: seeds: the [sweep] sets seed too; keep one of the two")
        sweep["seed"] = seeds  # the last dimension: a configuration's seeds run one after another
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise RecipeError(f"{path}: sweep.{key}: expected a non-empty list of values (got {values!r})")
    count = math.prod(len(values) for values in sweep.values())
    if count > max_runs:
        raise RecipeError(f"{path}: sweep: {count:,} combinations, more than the {max_runs:,} runs allowed; "
                          f"shorten the lists, or pass --max-runs {count} to run them all")
    expanded = []
    for combination in itertools.product(*sweep.values()):
        values = dict(zip(sweep, combination))
        variant = copy.deepcopy(data)
        for key, value in values.items():
            set_key(variant, key, value, path, "sweep")
        suffix = "-".join(f"{key.rsplit('.', 1)[-1]}{_label(value)}" for key, value in values.items())
        variant["name"] = f"{data.get('name', path.stem)}-{suffix}"
        expanded.append((variant, values))
    return expanded


def _seeds(seeds: Any, path: Path) -> list[int]:
    """``seeds = [0, 1, 2]``: every configuration once per seed."""
    if seeds is None:
        return []
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)):
        raise RecipeError(f"{path}: seeds: expected a non-empty list of integers in [0, 2**32), e.g. seeds = [0, 1, 2] "
                          f"(got {seeds!r})")
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"{path}: seeds: {sorted({s for s in seeds if seeds.count(s) > 1})} given twice; "
                          "list each seed once")
    return seeds


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``0-2``, ``0,1,2`` or ``0-2,7``. ValueError says what is wrong."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{part!r} is not a seed or a range of seeds; write e.g. 0-2 or 0,1,2")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"{part!r} runs the wrong way; write {high}-{low}")
        if high - low >= MAX_RUNS:
            raise ValueError(f"{part!r} is more than {MAX_RUNS:,} seeds")
        seeds += range(low, high + 1)
    if not seeds:
        raise ValueError("no seeds given; write e.g. 0-2 or 0,1,2")
    return seeds


def _validate(model: type[BaseModel] | None, values: dict, path: Path, prefix: str) -> BaseModel | None:
    try:
        return checked_params(model, values)
    except BadParams as error:
        raise RecipeError(f"{path}: {prefix}{'.' + error.key if error.key else ''}: {error.reason}") from None


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
    if len(name.encode()) > MAX_NAME_BYTES:
        raise RecipeError(f"{path}: name: {len(name.encode())} bytes, longer than the {MAX_NAME_BYTES} a run directory "
                          f"name can hold (got {name[:40]}...); shorten the name (in a sweep: or its values)")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise RecipeError(f"{path}: seed: must be an integer in [0, 2**32) (got {seed!r})")
    train = data.get("train", {})
    if not isinstance(train, dict):
        raise RecipeError(f"{path}: train: expected a [train] table")
    exports = data.get("export", [])
    if not isinstance(exports, list):
        raise RecipeError(f'{path}: export: expected [[export]] tables, each with use = "..."')
    dataset = _choice(data["dataset"], "dataset", "dataset", path, registry)
    architecture = _choice(data["architecture"], "architecture", "architecture", path, registry)
    backend = _choice(data["backend"], "backend", "backend", path, registry)
    _check_backend_supported(architecture, backend, path)
    chosen_exports = tuple(_choice(t, "exporter", f"export.{i}", path, registry) for i, t in enumerate(exports))
    _check_exporters_needed(chosen_exports, path)
    return Recipe(
        path=path,
        name=name,
        seed=seed,
        dataset=dataset,
        architecture=architecture,
        backend=backend,
        train=_validate(TrainConfig, train, path, "train"),
        exports=chosen_exports,
        eval=_eval_plan(data, path, registry),
        resources=_validate(Resources, data["resources"], path, "resources") if "resources" in data else None,
    )


def _check_backend_supported(architecture: Choice, backend: Choice, path: Path) -> None:
    """An architecture that gives native networks for some backends only (it declares
    ``backends``, maybe as a function of its parameters) is refused on the others."""
    try:
        supported = architecture.component.backends_for(architecture.params)
    except Exception as error:
        component = architecture.component
        raise RecipeError(f"{path}: architecture: architecture {component.name!r} ({component.provider}) failed to say "
                          f"which backends it runs on: {type(error).__name__}: {error}") from None
    if supported is not None and backend.name not in supported:
        raise RecipeError(f"{path}: backend.use: architecture {architecture.name!r} gives networks for the "
                          f"{', '.join(supported)} backend(s) only, not {backend.name!r}; "
                          f"set backend.use = {supported[0]!r}")


def _check_exporters_needed(exports: tuple[Choice, ...], path: Path) -> None:
    """An exporter whose factory declares ``needs_exporters`` (``gif`` reads ``png``'s
    grids) is refused without them, rather than silently writing nothing."""
    present = {choice.name for choice in exports}
    for index, choice in enumerate(exports):
        for needed in getattr(choice.component.factory, "needs_exporters", ()):
            if needed not in present:
                raise RecipeError(f"{path}: export.{index}: {choice.name!r} works from what the {needed!r} exporter "
                                  f'writes; add [[export]] use = "{needed}" to the recipe')


def _eval_plan(data: dict[str, Any], path: Path, registry: Registry) -> EvalPlan | None:
    if "eval" not in data:
        return None
    config = _validate(EvalConfig, data["eval"], path, "eval")
    try:
        return EvalPlan.resolve(config, registry)
    except LookupError as error:
        raise RecipeError(f"{path}: eval: {error}") from None
    except ValueError as error:
        raise RecipeError(f"{path}: eval.{getattr(error, 'key', 'metrics')}: {error}") from None


def check_requirements(recipe: Recipe) -> None:
    """Refuse a recipe any of whose components (exporters and scores included) needs a
    module that is not installed: a RecipeError naming the ``pip install`` that brings it,
    before anything runs."""
    components = [recipe.dataset.component, recipe.architecture.component, recipe.backend.component,
                  *(export.component for export in recipe.exports)]
    if recipe.eval is not None:
        components += [*recipe.eval.metrics.values(), recipe.eval.extractor]
    for component in components:
        if problem := component.requirement_problem():
            raise RecipeError(f"{recipe.path}: {problem}")


def load_recipe(path: Path, overrides: list[str], registry: Registry) -> Recipe:
    """One recipe (a file with a ``[sweep]`` is refused: use ``load_recipes``)."""
    recipes = load_recipes(path, overrides, registry)
    if len(recipes) != 1:
        raise RecipeError(f"{path}: sweep: this command takes a single recipe, not a sweep of {len(recipes)}")
    return recipes[0]


def load_recipes(path: Path, overrides: list[str], registry: Registry, max_runs: int = MAX_RUNS) -> list[Recipe]:
    """The recipe in ``path`` with ``overrides`` applied, or one recipe per sweep combination."""
    data = apply_overrides(read_toml(path), overrides, path)
    recipes = [dataclasses.replace(build_recipe(variant, path, registry), sweep=values)
               for variant, values in expand_sweep(data, path, max_runs)]
    for recipe in recipes:
        check_requirements(recipe)
    return recipes


# What a plugin may import from here (docs/plugins.md); the rest is gankit's own.
__all__ = ["read_toml", "RecipeError"]
