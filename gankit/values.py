"""TOML, read the one way gankit reads it: the loader (tomllib, or tomli before Python 3.11)
and a command line's ``KEY=VALUE`` value. Below both recipes and ``[eval]``, which use it."""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib  # noqa: TID251 (this is the loader everything else uses)
else:
    import tomli as tomllib

__all__ = ["tomllib", "parse_value"]


def parse_value(text: str) -> Any:
    """A ``--set`` value: read as a TOML value (``3``, ``2e-4``, ``true``, ``[1, 2]``,
    ``"x"``), else taken as a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text
