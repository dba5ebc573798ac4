"""gankit: train GANs from declarative TOML recipes. Everything it can do comes from plugins."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("gankit")
"""Decorate a plugin module's ``register_*`` functions with this."""
