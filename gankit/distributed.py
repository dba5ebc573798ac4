"""One run on several processes (``gankit run --gpus K``, or the backend's own launcher run
by hand). The run's backend starts the
processes (``Backend.launch_command``) and joins them (``Backend.world``); the core only
asks it, and knows no framework's collectives. Rank 0 alone writes the run directory;
every rank trains its share of each batch, and the backend averages the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from gankit.backend import BackendError, World


@dataclass(frozen=True)
class Processes:
    """A backend's ``World``, with what the core asks of it."""

    world: World

    @property
    def writer(self) -> bool:
        """Whether this process writes the run directory and shows progress."""
        return self.world.rank == 0

    def share(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        return self.world.share(value)

    def stop_together(self, should_stop: Callable[[], bool]) -> Callable[[], bool]:
        """``should_stop`` asked on every rank, true on all of them once it is on one."""
        return lambda: self.world.any(should_stop())


def join(backend: Any) -> Processes | None:
    """The processes the backend's launcher started this one among; None when it runs
    alone, or its backend trains in one process only."""
    world = getattr(backend, "world", None)
    joined = world() if world is not None else None
    return None if joined is None or joined.size <= 1 else Processes(joined)


def launch_command(backend: Any, name: str, processes: int, arguments: list[str]) -> list[str]:
    """The backend's command line for ``gankit ARGUMENTS`` on ``processes`` processes; a
    BackendError when the backend trains in one process only."""
    launch = getattr(backend, "launch_command", None)
    if launch is None:
        raise BackendError(f"backend {name!r} trains a run in one process only; leave out --gpus, or choose a "
                           "backend that trains on several (gankit list-plugins --kind backend)")
    return launch(processes, arguments)
