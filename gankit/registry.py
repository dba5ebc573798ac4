"""What plugins registered: one table of components, keyed by kind and name."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

KINDS = ("dataset", "architecture", "backend", "exporter", "metric", "feature_extractor")


class RegistryError(Exception):
    """A plugin registered something invalid, or two plugins claimed one name."""


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    provider: str
    params: type | None = None
    requires: tuple[str, ...] = ()
    backends: tuple[str, ...] | None = None

    def missing_requirements(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        return [module for module in self.requires if not _installed(module)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class BrokenPlugin:
    name: str
    provider: str
    error: str


@dataclass
class Registry:
    components: dict[tuple[str, str], Component] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def add(self, component: Component) -> None:
        key = (component.kind, component.name)
        if key in self.components:
            other = self.components[key]
            raise RegistryError(
                f"two plugins register the {component.kind} {component.name!r}: "
                f"{other.provider} and {component.provider}; uninstall one of them"
            )
        self.components[key] = component

    def of_kind(self, kind: str) -> list[Component]:
        return sorted((c for c in self.components.values() if c.kind == kind), key=lambda c: c.name)

    def get(self, kind: str, name: str) -> Component:
        """The component, or a LookupError whose message suggests the closest name."""
        try:
            return self.components[(kind, name)]
        except KeyError:
            known = [c.name for c in self.of_kind(kind)]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none'}"
            raise LookupError(f"unknown {kind} {name!r}; {hint}") from None
