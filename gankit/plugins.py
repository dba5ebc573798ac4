"""Find plugins and collect what they register.

Plugins are modules (or objects) with ``register_*`` hook implementations, found through
the ``gankit`` entry-point group; the bundled ones are found the same way. A bad neighbour
never takes gankit down: a plugin that fails to import, implements a hook gankit does not
have, needs another plugin API version or whose hook raises is listed as broken; two
plugins claiming one component (or one entry-point name) are listed as conflicting, and
only that name is unusable. Each problem is one line ending in the
``GANKIT_DISABLE_PLUGINS`` setting that silences it; ``GANKIT_STRICT_PLUGINS=1`` makes
them fatal. ``GANKIT_DISABLE_PLUGINS`` is a comma-separated list of plugin names to skip:
an entry-point name, or ``distribution:name`` where two distributions use one name.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from gankit import API_VERSION, hookspecs
from gankit.interrupt import Interrupted
from gankit.registry import BrokenPlugin, Component, Conflict, Registry, RegistryError

GROUP = "gankit"
HOOK_KINDS = {
    "register_datasets": "dataset",
    "register_architectures": "architecture",
    "register_backends": "backend",
    "register_exporters": "exporter",
    "register_metrics": "metric",
    "register_feature_extractors": "feature_extractor",
}


def strict() -> bool:
    return os.environ.get("GANKIT_STRICT_PLUGINS", "") not in ("", "0")


@dataclass
class _Candidate:
    name: str
    distribution: str
    provider: str
    load: Callable[[], Any]


def _candidates(found: Iterable[metadata.EntryPoint]) -> list[_Candidate]:
    candidates = []
    for entry_point in found:
        dist = entry_point.dist
        distribution = dist.metadata["Name"] if dist is not None else "unknown"
        provider = "builtin" if distribution == "gankit" else f"{distribution} {dist.version}" if dist else "unknown"
        candidates.append(_Candidate(entry_point.name, distribution, provider, entry_point.load))
    return sorted(candidates, key=lambda candidate: (candidate.name, candidate.distribution))


def _one_line(error: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _api_mismatch(plugin: Any) -> str | None:
    """Why ``plugin`` cannot run on this API version (its ``GANKIT_API`` specifier), or None."""
    wanted = getattr(plugin, "GANKIT_API", None)
    if wanted is None:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        if API_VERSION in SpecifierSet(str(wanted)):
            return None
    except InvalidSpecifier:
        return f"GANKIT_API = {wanted!r} is not a version specifier (e.g. '>=1,<2')"
    return f"needs plugin API {wanted}, this gankit has {API_VERSION}; upgrade gankit or the plugin"


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> str:
    """What ``pm.check_pending()`` found wrong with ``plugin``: its hooks gankit has no spec for."""
    problems = []
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        if any(impl.plugin is plugin for impl in caller.get_hookimpls()):
            close = difflib.get_close_matches(name, list(HOOK_KINDS), n=1)
            problems.append(f"unknown hook {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return ", ".join(problems)


def make_plugin_manager(
    plugins: Iterable[tuple[str, Any, str]] = (), *, entry_points: bool = True
) -> tuple[pluggy.PluginManager, dict[str, str], list[BrokenPlugin], list[Conflict]]:
    """A fresh plugin manager holding the ``gankit`` entry points, then ``plugins`` given
    as ``(name, plugin, provider)`` (tests pass fakes this way).

    Returns the manager, each plugin's provider by plugin name, the broken plugins and
    the entry-point names that several distributions use (each loaded as
    ``distribution:name`` then).
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    providers: dict[str, str] = {}
    broken: list[BrokenPlugin] = []
    disabled = {n.strip() for n in os.environ.get("GANKIT_DISABLE_PLUGINS", "").split(",")}
    candidates = _candidates(metadata.entry_points(group=GROUP) if entry_points else ())
    candidates += [_Candidate(name, name, provider, lambda p=plugin: p) for name, plugin, provider in plugins]
    candidates = [c for c in candidates if not {c.name, f"{c.distribution}:{c.name}"} & disabled]
    shared = {name for name, count in Counter(c.name for c in candidates).items() if count > 1}
    conflicts = [
        Conflict(f"the entry-point name {name!r}",
                 [(f"{c.distribution}:{name}", c.provider) for c in candidates if c.name == name])
        for name in sorted(shared)
    ]
    for candidate in candidates:
        name = f"{candidate.distribution}:{candidate.name}" if candidate.name in shared else candidate.name
        try:
            plugin = candidate.load()
            reason = _api_mismatch(plugin)
            if reason is None:
                pm.register(plugin, name=name)
                try:
                    pm.check_pending()
                except pluggy.PluginValidationError as error:
                    reason = _unknown_hooks(pm, plugin) or _one_line(error)
                    pm.unregister(name=name)
        except Interrupted:
            raise
        except (Exception, SystemExit) as error:
            reason = _one_line(error)
        if reason is not None:
            broken.append(BrokenPlugin(name, candidate.provider, reason))
            continue
        providers[name] = candidate.provider
    return pm, providers, broken, conflicts


def collect(pm: pluggy.PluginManager, providers: dict[str, str], broken: list[BrokenPlugin],
            conflicts: Iterable[Conflict] = ()) -> Registry:
    """Call every plugin's ``register_*`` hooks and gather the components into a registry.

    Plugins are called one at a time so each component knows its provider, and a plugin
    whose hook raises is moved to ``broken`` without its partial registrations.
    """
    registry = Registry(broken=list(broken), conflicts={c.what: c for c in conflicts})
    for plugin_name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        provider = providers.get(plugin_name, "unknown")
        staged: list[Component] = []
        try:
            for hook_name, kind in HOOK_KINDS.items():
                for impl in getattr(pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=_register_into(staged, kind, provider, plugin_name))
        except Interrupted:
            raise
        except (Exception, SystemExit) as error:
            registry.broken.append(BrokenPlugin(plugin_name, provider, _one_line(error)))
            continue
        for component in staged:
            registry.add(component)
    return registry


def _register_into(staged: list[Component], kind: str, provider: str, plugin: str):
    def register(name, factory, *, description, params=None, requires=(), backends=None, default=False):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {kind} has an empty or non-string name {name!r}")
        if not callable(factory):
            raise TypeError(f"the {kind} {name!r} has a factory that is not callable")
        staged.append(
            Component(
                kind=kind,
                name=name,
                factory=factory,
                description=str(description),
                provider=provider,
                params=params,
                requires=tuple(requires),
                backends=backends if backends is None or callable(backends) else tuple(backends),
                plugin=plugin,
                default=bool(default),
            )
        )

    return register


def load_registry(plugins: Iterable[tuple[str, Any, str]] = (), *, entry_points: bool = True) -> Registry:
    """Everything installed plugins register: the usual way into gankit's components.

    With ``GANKIT_STRICT_PLUGINS=1`` any broken or conflicting plugin raises a
    RegistryError whose message is one line per problem.
    """
    registry = collect(*make_plugin_manager(plugins, entry_points=entry_points))
    if strict() and registry.problems():
        raise RegistryError("\n".join(registry.problems()))
    return registry
