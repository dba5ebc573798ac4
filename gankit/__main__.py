"""``python -m gankit`` and the ``gankit`` command's entry point."""

import signal

from gankit.interrupt import interrupted


def entry() -> None:
    """Run the CLI with Ctrl-C a clean exit (code 130) from the first instant, even while
    the CLI is still importing; ``gankit run`` installs its own stop-at-a-step handler."""
    signal.signal(signal.SIGINT, interrupted)
    from gankit.cli import main

    main(prog_name="gankit")


if __name__ == "__main__":
    entry()
