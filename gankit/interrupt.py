"""Ctrl-C before ``gankit run`` installs its stop-at-a-step handler (``cli.StopFlag``): a
clean exit with code 130, from the first instant, even while the CLI is still importing."""

from __future__ import annotations

import sys


class Interrupted(SystemExit):
    """Raised by the start-up Ctrl-C handler. Its own class so that code which catches a
    plugin's ``sys.exit`` at import (``gankit.plugins``) lets it through: a Ctrl-C that
    lands while a plugin imports must stop gankit, not mark the plugin broken."""


def interrupted(signum, frame) -> None:
    sys.stderr.write("interrupted; no file was left half-written\n")
    raise Interrupted(130)
