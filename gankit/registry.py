"""What plugins registered: one table of components, keyed by kind and name."""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

from gankit.errors import GankitError

KINDS = ("dataset", "architecture", "backend", "exporter", "metric", "feature_extractor")


class RegistryError(GankitError):
    """Plugin problems made fatal by ``GANKIT_STRICT_PLUGINS=1``: one line per problem."""


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    provider: str
    params: type | None = None
    requires: tuple[str, ...] = ()
    backends: tuple[str, ...] | Callable[[Any], tuple[str, ...] | None] | None = None
    """Architectures: the backends it gives native builders for (None: it is described with
    gankit.nn and runs on every backend), or a function of its validated parameters giving
    that (a native variant that one parameter chooses); read it with ``backends_for``."""
    default: bool = False
    """Metrics and feature extractors: used when a recipe or command names none of its kind."""
    plugin: str = ""
    """The name the providing plugin was loaded under: what ``GANKIT_DISABLE_PLUGINS`` takes."""

    def backends_for(self, params: Any) -> tuple[str, ...] | None:
        """The backends this architecture runs on with ``params`` (None: every backend)."""
        found = self.backends(params) if callable(self.backends) else self.backends
        return tuple(found) if found is not None else None

    def missing_requirements(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        return [module for module in self.requires if not _installed(module)]

    @property
    def distribution(self) -> str:
        """The name of the package that provides this component."""
        return "gankit" if self.provider == "builtin" else self.provider.rsplit(" ", 1)[0]

    def requirement_problem(self) -> str | None:
        """One line naming the required modules that are missing and how to get them, or None."""
        missing = self.missing_requirements()
        if not missing:
            return None
        modules = ", ".join(repr(module) for module in missing)
        return (f"{self.kind} {self.name!r} ({self.provider}) needs the module{'s' * (len(missing) > 1)} {modules}, "
                f"which {'are' if len(missing) > 1 else 'is'} not installed; {install_hint(self.distribution, missing)}")


def install_hint(distribution: str, modules: list[str]) -> str:
    """``pip install 'DIST[EXTRA]'`` when an extra of ``distribution`` brings the first of
    ``modules``; else which package must provide them."""
    extra = _extra_bringing(distribution, modules[0])
    if extra is not None:
        return f"pip install '{distribution}[{extra}]'"
    return f"install the package that provides {modules[0]!r} (a requirement of {distribution})"


def install_command(distribution: str, module: str) -> str:
    """The command that installs ``module``: ``pip install 'DIST[EXTRA]'`` when an extra of
    ``distribution`` (its installed metadata) brings it, else ``pip install MODULE``."""
    extra = _extra_bringing(distribution, module)
    return f"pip install '{distribution}[{extra}]'" if extra is not None else f"pip install {module}"


def _extra_bringing(distribution: str, module: str) -> str | None:
    """The extra of ``distribution``'s optional dependencies that requires ``module`` (by name), if any."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        requirements = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        extra = re.search(r'extra\s*==\s*"([^"]+)"', str(requirement.marker or ""))
        if extra and canonicalize_name(requirement.name) == canonicalize_name(module):
            return extra.group(1)
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def disable_hint(*plugins: str) -> str:
    """The ``GANKIT_DISABLE_PLUGINS`` setting that also skips ``plugins`` (keeping what is set)."""
    current = [name.strip() for name in os.environ.get("GANKIT_DISABLE_PLUGINS", "").split(",") if name.strip()]
    return "GANKIT_DISABLE_PLUGINS=" + ",".join(dict.fromkeys([*current, *plugins]))


@dataclass
class BrokenPlugin:
    """A plugin that could not be loaded or whose hooks failed; it provides nothing."""

    name: str
    provider: str
    error: str

    def problem(self) -> str:
        return f"plugin {self.name!r} ({self.provider}) is broken: {self.error}; silence it with {disable_hint(self.name)}"


@dataclass
class Conflict:
    """Two or more plugins claiming one thing: a component's kind and name, or an entry-point name."""

    what: str
    claimants: list[tuple[str, str]]
    """(plugin name, provider) of each plugin that claims it."""
    kind: str | None = None
    """The contested component's kind; None for an entry-point name."""

    def problem(self) -> str:
        claimants = sorted(self.claimants, key=lambda claimant: (claimant[1] != "builtin", claimant))
        who = " and ".join(f"{provider} (plugin {plugin!r})" for plugin, provider in claimants)
        keep = "; ".join(
            f"{disable_hint(*(other for other, _ in claimants if other != plugin))} keeps {provider}'s"
            for plugin, provider in claimants
        )
        return f"two plugins claim {self.what}: {who}; {keep}"


@dataclass
class Registry:
    components: dict[tuple[str, str], Component] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    conflicts: dict[str, Conflict] = field(default_factory=dict)
    """By what is contested, e.g. "the architecture 'dcgan'"; a contested component is in none of ``components``."""

    def add(self, component: Component) -> None:
        """Add a component; a second one of the same kind and name makes both unusable (a conflict)."""
        key = (component.kind, component.name)
        what = _describe(*key)
        if what in self.conflicts:
            self.conflicts[what].claimants.append((component.plugin, component.provider))
        elif key in self.components:
            other = self.components.pop(key)
            self.conflicts[what] = Conflict(
                what, [(other.plugin, other.provider), (component.plugin, component.provider)], component.kind
            )
        else:
            self.components[key] = component

    def problems(self) -> list[str]:
        """One line per broken plugin and per conflict, each saying how to silence it."""
        return [b.problem() for b in self.broken] + [c.problem() for c in self.conflicts.values()]

    def of_kind(self, kind: str) -> list[Component]:
        """The usable components of ``kind`` (contested names are left out), by name."""
        return sorted((c for c in self.components.values() if c.kind == kind), key=lambda c: c.name)

    def defaults(self, kind: str) -> list[Component]:
        """The components of ``kind`` registered with ``default=True``, in the order they
        were registered, an outside plugin's before the bundled ones."""
        marked = [c for c in self.components.values() if c.kind == kind and c.default]
        return sorted(marked, key=lambda c: c.provider == "builtin")

    def contested(self, kind: str) -> list[Conflict]:
        return [c for c in self.conflicts.values() if c.kind == kind]

    def get(self, kind: str, name: str) -> Component:
        """The component, or a LookupError whose message suggests the closest name, or
        names the plugins that both claim it."""
        conflict = self.conflicts.get(_describe(kind, name))
        if conflict is not None:
            raise LookupError(conflict.problem())
        try:
            return self.components[(kind, name)]
        except KeyError:
            known = [c.name for c in self.of_kind(kind)]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none'}"
            raise LookupError(f"unknown {kind} {name!r}; {hint}") from None


def _describe(kind: str, name: str) -> str:
    return f"the {kind.replace('_', ' ')} {name!r}"
