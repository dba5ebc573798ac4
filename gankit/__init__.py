"""gankit: train GANs from declarative TOML recipes. Everything it can do comes from plugins."""

import pluggy

__all__ = ["API_VERSION", "__version__", "hookimpl"]

__version__ = "0.1.0"

API_VERSION = "1.0"
"""The plugin API's version: the hooks, what their factories receive and return, and the
modules ``docs/plugins.md`` lists as public. The major number changes when something a
plugin relies on changes; a plugin may require a range with ``GANKIT_API = ">=1,<2"``."""

hookimpl = pluggy.HookimplMarker("gankit")
"""Decorate a plugin module's ``register_*`` functions with this."""
