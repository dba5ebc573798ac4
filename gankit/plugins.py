"""Find plugins and collect what they register.

Plugins are modules (or objects) with ``register_*`` hook implementations, found through
the ``gankit`` entry-point group; the bundled ones are found the same way. Each is loaded
on its own: one that fails to import or to register is reported as broken and the rest
still work (``GANKIT_STRICT_PLUGINS=1`` re-raises instead). ``GANKIT_DISABLE_PLUGINS`` is
a comma-separated list of entry-point names to skip.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any, Iterable

import pluggy

from gankit import hookspecs
from gankit.registry import BrokenPlugin, Component, Registry, RegistryError

GROUP = "gankit"
HOOK_KINDS = {
    "register_datasets": "dataset",
    "register_architectures": "architecture",
    "register_backends": "backend",
    "register_exporters": "exporter",
    "register_metrics": "metric",
    "register_feature_extractors": "feature_extractor",
}


def _strict() -> bool:
    return os.environ.get("GANKIT_STRICT_PLUGINS", "") not in ("", "0")


def _provider(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        return "unknown"
    name = dist.metadata["Name"]
    return "builtin" if name == "gankit" else f"{name} {dist.version}"


def make_plugin_manager(
    plugins: Iterable[tuple[str, Any, str]] = (), *, entry_points: bool = True
) -> tuple[pluggy.PluginManager, dict[str, str], list[BrokenPlugin]]:
    """A fresh plugin manager holding the ``gankit`` entry points, then ``plugins`` given
    as ``(name, plugin, provider)`` (tests pass fakes this way).

    Returns the manager, each plugin's provider by plugin name, and the broken plugins.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    providers: dict[str, str] = {}
    broken: list[BrokenPlugin] = []
    disabled = {n.strip() for n in os.environ.get("GANKIT_DISABLE_PLUGINS", "").split(",")}
    found = metadata.entry_points(group=GROUP) if entry_points else ()
    candidates = [(ep.name, ep.load, _provider(ep)) for ep in sorted(found, key=lambda ep: ep.name)]
    candidates += [(name, (lambda p=plugin: p), provider) for name, plugin, provider in plugins]
    for name, load, provider in candidates:
        if name in disabled or pm.has_plugin(name):
            continue
        try:
            pm.register(load(), name=name)
        except Exception as error:
            if _strict():
                raise
            broken.append(BrokenPlugin(name, provider, f"{type(error).__name__}: {error}"))
            continue
        providers[name] = provider
    pm.check_pending()
    return pm, providers, broken


def collect(pm: pluggy.PluginManager, providers: dict[str, str], broken: list[BrokenPlugin]) -> Registry:
    """Call every plugin's ``register_*`` hooks and gather the components into a registry.

    Plugins are called one at a time so each component knows its provider, and a plugin
    whose hook raises is moved to ``broken`` without its partial registrations.
    """
    registry = Registry(broken=list(broken))
    for plugin_name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        provider = providers.get(plugin_name, "unknown")
        staged: list[Component] = []
        try:
            for hook_name, kind in HOOK_KINDS.items():
                for impl in getattr(pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=_register_into(staged, kind, provider))
        except Exception as error:
            if _strict():
                raise
            registry.broken.append(BrokenPlugin(plugin_name, provider, f"{type(error).__name__}: {error}"))
            continue
        for component in staged:
            registry.add(component)
    return registry


def _register_into(staged: list[Component], kind: str, provider: str):
    def register(name, factory, *, description, params=None, requires=(), backends=None):
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {kind} from {provider} has an empty or non-string name")
        staged.append(
            Component(
                kind=kind,
                name=name,
                factory=factory,
                description=description,
                provider=provider,
                params=params,
                requires=tuple(requires),
                backends=tuple(backends) if backends is not None else None,
            )
        )

    return register


def load_registry(plugins: Iterable[tuple[str, Any, str]] = (), *, entry_points: bool = True) -> Registry:
    """Everything installed plugins register: the usual way into gankit's components."""
    return collect(*make_plugin_manager(plugins, entry_points=entry_points))
