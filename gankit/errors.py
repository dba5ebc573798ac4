"""The one error family: everything gankit reports to a user as one line.

Each member says what was wrong and how to fix it; the command line catches the base
alone and prints the line. A plugin raises the member of its kind (``DataError`` from a
dataset, ``BackendError`` from a backend, ``EvalError`` from a metric or extractor): any
other exception from a plugin's code is reported as that plugin's, naming it.
"""

from __future__ import annotations

__all__ = ["GankitError", "PluginFault"]


class GankitError(Exception):
    """Something the user can fix, in one line: what was wrong, then how to fix it."""


class PluginFault(GankitError):
    """A fault in a plugin's own code, found where another part calls it: a backend calling
    an architecture's native builder. ``kind`` is the faulty plugin's kind, so the runner
    names that plugin (the recipe's choice of that kind), not the caller."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
