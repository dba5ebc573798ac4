"""``gankit run --ray [ADDRESS]``: each run of a batch is a Ray task on a cluster, with the
CPUs and GPUs its recipe's ``[resources]`` (or ``--cpus-per-run``/``--gpus-per-run``) ask
for; Ray's scheduler decides where and when. The only module that imports Ray.

Workers write to the runs directory themselves, so on a cluster of several machines it
must be on storage they all share, at the same path: every node is made to prove it can
write there before the batch starts. A worker that dies fails its run only; the others
go on.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from gankit.batch import Outcome
from gankit.parallel import Job, train_job
from gankit.rundir import RunError

STOP_POLL_SECONDS = 1.0
"""How often a worker asks whether the batch is stopping (a remote call)."""


class Flags:
    """The batch's two switches, held by a Ray actor that every worker can read."""

    def __init__(self):
        self.draining = self.stopping = False

    def drain(self) -> None:
        self.draining = True

    def stop(self) -> None:
        self.draining = self.stopping = True

    def state(self) -> tuple[bool, bool]:
        return self.draining, self.stopping


def _probe(folder: str) -> str | None:
    """On one node: None if this node can write in ``folder``, else what is wrong."""
    path = Path(folder)
    where = f"on node {socket.gethostname()}"
    if not path.is_dir():
        return f"{where}, {folder} does not exist: put the runs directory on storage every node shares"
    try:
        with tempfile.TemporaryFile(dir=path):
            return None
    except OSError as error:
        return f"{where}, cannot write in {folder} ({error.strerror or error})"


def _ray_worker(job: Job, messages, flags) -> Outcome:
    """A Ray task: one run, unless the batch is stopping or draining before it begins."""
    import ray

    draining, _ = ray.get(flags.state.remote())
    if draining:
        return job.skipped()
    polled = {"at": float("-inf"), "stopping": False}

    def should_stop() -> bool:
        if time.monotonic() - polled["at"] >= STOP_POLL_SECONDS:
            polled["at"], polled["stopping"] = time.monotonic(), ray.get(flags.state.remote())[1]
        return polled["stopping"]

    return train_job(job, lambda item: messages.put((job.index, item)), should_stop)


class RayEngine:
    """Runs jobs as Ray tasks on the cluster at ``address`` ("auto": the one ``ray start``
    made or ``RAY_ADDRESS`` names; "local": a Ray of its own on this machine)."""

    def __init__(self, address: str, runs_root: Path):
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise RunError("--ray needs Ray, which is not installed; pip install 'gankit[ray]'") from None
        self.ray = ray
        try:
            ray.init(address=None if address == "local" else address, logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise RunError(f"--ray {address}: cannot connect to a Ray cluster ({str(error).splitlines()[0]}); "
                           "start one with `ray start --head`, or give its address") from None
        runs_root.mkdir(parents=True, exist_ok=True)
        self._check_writable(runs_root.resolve())
        self.messages = Queue()
        self.flags = ray.remote(num_cpus=0)(Flags).remote()
        self.task = ray.remote(_ray_worker)
        self.tasks: dict[Any, Job] = {}

    def _check_writable(self, folder: Path) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(num_cpus=0, max_retries=0)(_probe)
        nodes = [node["NodeID"] for node in self.ray.nodes() if node["Alive"]]
        found = self.ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                              .remote(str(folder)) for node in nodes])
        for problem in found:
            if problem:
                raise RunError(f"--runs-dir {folder}: {problem}")

    def has_room(self) -> bool:
        return True  # Ray queues the tasks until their resources are free

    def capacity(self, cpus: float) -> int:
        """How many runs of ``cpus`` cores each the cluster trains at once (a search asks
        for no more trials than that, so that each learns from those before)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1) // cpus))

    def start(self, job: Job) -> None:
        options = {"num_cpus": job.cpus, "num_gpus": job.gpus, "max_retries": 0}
        self.tasks[self.task.options(**options).remote(job, self.messages, self.flags)] = job

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        ray = self.ray
        received: list[tuple[int, Any]] = []
        if self.tasks:
            ray.wait(list(self.tasks), num_returns=1, timeout=timeout)
            ready, _ = ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=0)
        else:
            ready = []
        received += self._drain()
        for ref in ready:
            job = self.tasks.pop(ref)
            try:
                received.append((job.index, ray.get(ref)))
            except ray.exceptions.TaskCancelledError:
                received.append((job.index, job.died("was cancelled")))
            except ray.exceptions.RayError as error:
                received.append((job.index, job.died(f"died ({type(error).__name__})")))
        return received

    def _drain(self) -> list[tuple[int, Any]]:
        size = self.messages.qsize()
        return self.messages.get_nowait_batch(size) if size else []

    def drain(self) -> None:
        self.flags.drain.remote()

    def stop(self) -> None:
        self.flags.stop.remote()

    def abort(self) -> None:
        for ref in self.tasks:
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()
